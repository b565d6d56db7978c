"""The poison-pill guard: whatever one record's step raises ends as that record's dead letter."""

from __future__ import annotations

import logging

import pytest

from geoverdict_service.exceptions import BadEventError, FetchError, InternalError
from geoverdict_service.pipeline.items import guard
from tests.service.fakes import item


def test_an_unforeseen_exception_becomes_an_internal_failure_naming_the_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    one = item(0, 3)

    def broken() -> None:
        raise KeyError("\n2026-01-01 INFO forged line")

    guard(one, "fetch", broken)  # does not raise
    assert isinstance(one.failure, InternalError)
    assert (one.failure.reason, one.failure.step, one.failure.exception_type) == (
        "internal",
        "fetch",
        "KeyError",
    )
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "images/0@3" in logged.getMessage()
    assert "\n2026-01-01 INFO forged line" not in logged.getMessage()


def test_a_bad_event_keeps_its_own_reason_and_the_first_reason_wins() -> None:
    one = item(0, 0)

    def refused() -> None:
        raise FetchError("host not allowed", "fetch_disallowed")

    def later() -> None:
        raise BadEventError("a second problem", "schema_violation")

    guard(one, "fetch", refused)
    guard(one, "verdict", later)
    assert one.failure is not None
    assert one.failure.reason == "fetch_disallowed"
    assert not one.needs_inference
    assert one.answered  # a failed record has its dead letter to produce
