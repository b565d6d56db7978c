"""Errors of the verdict service. Each dead-letter reason maps to one subclass."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of every error the verdict service raises."""


class InvalidSettingsError(ServiceError):
    """A setting is missing or invalid; the service refuses to start."""


class BadEventError(ServiceError):
    """An event that can never succeed: it goes to the dead-letter topic with `reason`."""

    reason = "bad_event"

    def __init__(
        self, message: str, reason: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.event_id = event_id  # the event's id when it could be read, for the dead letter


class FetchError(BadEventError):
    """An image URL that could not be fetched (after retries) or is not allowed."""

    reason = "fetch_failed"


class BadImageError(BadEventError):
    """The model server rejected this one image (undecodable, truncated, too large, ...)."""

    reason = "bad_image"

    def __init__(self, message: str, code: str, model_version: str | None = None) -> None:
        super().__init__(message, f"image_{code}")
        self.code = code
        self.model_version = model_version


class InternalError(BadEventError):
    """An unexpected exception while handling one record: a bug or an input nobody foresaw.

    The record is dead-lettered (the exception's type in a header, the traceback in the log)
    and the stream goes on: one message must never stop the service."""

    reason = "internal"

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"{step}: {type(cause).__name__}: {cause}")
        self.step = step
        self.exception_type = type(cause).__name__


class KafkaUnavailableError(ServiceError):
    """Kafka cannot be reached, refuses our credentials, or lacks a topic we need."""


class InferenceUnavailableError(ServiceError):
    """The model server is unreachable or overloaded: retry later, never dead-letter."""


class ProvenanceError(ServiceError):
    """Part of a photo's provenance could not be established: its verdict says which and why,
    and the verdict goes out (never a dead letter)."""


class FingerprintError(ProvenanceError):
    """The consumer could not decode the image to hash it (the model server judges the image)."""


class IndexUnavailableError(ProvenanceError):
    """The near-duplicate index (Redis) failed: provenance is marked unavailable, nothing lost."""
