"""The training package's errors: one root, a few specific subclasses."""

from __future__ import annotations


class TrainingError(Exception):
    """Root of every error the training package raises on purpose."""


class ConfigError(TrainingError):
    """A setting is out of range or malformed (a partition's thresholds, a level)."""


class DataFileError(TrainingError):
    """A data file (manifest, cells CSV, predictions CSV, shard) is missing or malformed."""


class ImageError(TrainingError):
    """An image cannot be decoded; `code` is a stable string for dead letters and metrics."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class BackboneError(TrainingError):
    """A backbone name is unknown, or its weights are missing or do not fit the architecture."""


class TensorError(TrainingError):
    """Tensors given to a loss or a prediction do not fit (shape, label range, hierarchy)."""


class CheckpointError(TrainingError):
    """A checkpoint or model archive cannot be read, or does not fit the run that loads it."""


class ExportError(TrainingError):
    """A model archive cannot be built."""
