"""Backoff: TorchServe's retries (with jitter), image fetches, health checks while paused."""

from __future__ import annotations

import math

import pytest

from geoverdict_service.backoff import Backoff, delay


def test_delays_double_up_to_the_cap_and_start_over_after_reset() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_paused_consumer_can_back_off_for_days_without_overflowing() -> None:
    backoff = Backoff(2.0, 30.0)
    delays = [backoff.next() for _ in range(100_000)]  # every 30 s: about 35 days
    assert delays[:5] == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert delays[-1] == 30.0


def test_an_impossible_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="0 < initial <= max"):
        Backoff(5.0, 1.0)


def test_a_fetch_waits_twice_as_long_after_each_failure_with_no_cap() -> None:
    assert [delay(attempt, 0.5) for attempt in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert delay(20, 0.5) == 0.5 * 2**20 < math.inf


def test_jitter_spreads_retries_between_half_and_all_of_the_capped_delay() -> None:
    waits = [delay(attempt, 0.5, 10.0, jitter=True) for attempt in range(8) for _ in range(200)]
    capped = [min(10.0, 0.5 * 2**attempt) for attempt in range(8) for _ in range(200)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, capped, strict=True))
    assert len(set(waits)) > len(waits) // 2  # spread, not one value per attempt
    assert max(waits) <= 10.0
