"""The shared package's errors: one root, a few specific subclasses."""

from __future__ import annotations


class CommonError(Exception):
    """Root of geoverdict_common's errors."""


class ServingConfigError(CommonError):
    """A model server configuration (batching, workers, GPUs) that cannot work."""
