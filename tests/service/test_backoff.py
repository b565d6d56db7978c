"""Backoff while TorchServe is unavailable."""

from __future__ import annotations

import pytest

from geoverdict_service.backoff import Backoff


def test_delays_double_up_to_the_cap_and_start_over_after_reset() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_an_impossible_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="0 < initial <= max"):
        Backoff(5.0, 1.0)
