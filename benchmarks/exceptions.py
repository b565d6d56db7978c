"""Errors of the benchmarks."""

from __future__ import annotations


class BenchError(Exception):
    """What stops a benchmark before it measures: no photos, no model, no such device."""
