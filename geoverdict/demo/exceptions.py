"""Errors of `geoverdict demo`."""

from __future__ import annotations


class DemoError(Exception):
    """What stops the demo before it starts (nothing to publish)."""
