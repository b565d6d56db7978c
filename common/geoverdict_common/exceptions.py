"""The shared package's errors: one root, a few specific subclasses."""

from __future__ import annotations


class CommonError(Exception):
    """Root of geoverdict_common's errors."""


class ServingConfigError(CommonError):
    """A model server configuration (batching, workers, GPUs) that cannot work."""


class ContractError(CommonError):
    """What a model server or the cache sent breaks a wire contract; `reason` is the stable
    code a dead letter and the metrics carry."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InferenceKeyError(CommonError):
    """An inference key file that is missing, unreadable or not in key_file.json's format."""
