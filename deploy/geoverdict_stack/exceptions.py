"""Errors of the local stack: each names the cause and, where there is one, the fix."""

from __future__ import annotations

from pathlib import Path


class StackError(Exception):
    """Root of every error the local stack raises."""


class PrerequisiteError(StackError):
    """A program the stack needs is missing or too old."""


class PortInUseError(StackError):
    """A port the stack was asked to use is already taken."""


class DownloadError(StackError):
    """The Kafka jars could not be fetched from Maven Central."""


class StartError(StackError):
    """A server did not become ready; the message names its log file."""

    def __init__(self, service: str, reason: str, log_file: Path | None = None) -> None:
        where = f" (see its log: {log_file})" if log_file else ""
        super().__init__(f"{service} did not start: {reason}{where}")
        self.service = service
        self.log_file = log_file


class NotRunningError(StackError):
    """The stack (or one of its servers) is not running."""
