"""Errors of the verdict service. Each dead-letter reason maps to one subclass."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of every error the verdict service raises."""


class ConfigError(ServiceError):
    """A setting is missing or invalid; the service refuses to start."""


class BadEventError(ServiceError):
    """An event that can never succeed: it goes to the dead-letter topic with `reason`."""

    reason = "bad_event"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


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


class InferenceUnavailableError(ServiceError):
    """The model server is unreachable or overloaded: retry later, never dead-letter."""
