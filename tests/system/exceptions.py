"""Errors of the system tests' harness."""

from __future__ import annotations


class HarnessError(Exception):
    """What stops a proof or the soak before it counts: no broker, a consumer that exited, a
    group that never settles, a publisher that failed."""
