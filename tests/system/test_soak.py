"""The soak's bookkeeping: windows of latency by publication time, the memory bound, the report
and the option's durations; and the soak itself, an hour long, only when asked for with
`pytest tests/system/test_soak.py --full-size --soak-rate N` (its results into bench/soak.json
and docs/benchmarks.md)."""

from __future__ import annotations

import argparse

import pytest

from tests.system.answers import Counts
from tests.system.exactly_once import Target
from tests.system.options import duration
from tests.system.proofs import Sizes, report_paths, write_soak
from tests.system.soak import SoakRun, Window, _windows, report, soak_run


def counts(missing: int = 0, duplicates: int = 0) -> Counts:
    return Counts(10, 10 - missing, missing, duplicates, min(duplicates, 1), 0, {}, "kcat")


def soak(start: float, end: float, c: Counts) -> SoakRun:
    window = Window(300.0, end, 0, 10, 120.0, 480.0)
    return SoakRun("exactly_once", 2.0, 600.0, 10, 300.0, start, end, [window], c, 610.0, 0)


def test_each_window_holds_the_events_published_inside_it() -> None:
    began = 1000.0
    sent = {"a": began + 10, "b": began + 20, "c": began + 310}
    answered = {"a": began + 10.1, "b": began + 20.5, "c": began + 312}
    windows = _windows([(300.0, 200.0, 3), (600.0, 201.0, 0)], sent, answered, began)
    assert [w.answered for w in windows] == [2, 1]
    assert windows[0].p99_ms == pytest.approx(500.0)
    assert windows[1].p50_ms == pytest.approx(2000.0)
    assert [w.lag for w in windows] == [3, 0]


def test_the_soak_fails_on_memory_growth_beyond_ten_percent_or_a_wrong_count() -> None:
    assert soak(200.0, 219.0, counts()).passed
    assert not soak(200.0, 221.0, counts()).passed
    assert not soak(200.0, 200.0, counts(duplicates=1)).passed
    assert not soak(200.0, 200.0, counts(missing=1)).passed


def test_the_report_says_what_a_reader_checks() -> None:
    text = report(soak(200.0, 221.0, counts(duplicates=2)))
    assert "| 5 | 221.0 | 0 | 10 | 120 | 480 |" in text
    assert "2 duplicates" in text and "+10.5%" in text and "FAILED" in text


def test_durations_read_as_seconds_minutes_or_hours() -> None:
    assert [duration(t) for t in ("90", "90s", "20m", "1h")] == [90, 90, 1200, 3600]
    for bad in ("0", "-1m", "an hour", "1d"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)


@pytest.mark.integration
@pytest.mark.slow
def test_an_hour_of_events_each_answered_once_with_memory_bounded(
    request: pytest.FixtureRequest, sizes: Sizes
) -> None:
    rate = request.config.getoption("soak_rate")
    if not sizes.full or rate is None:
        pytest.skip("an hour long: pytest tests/system/test_soak.py --full-size --soak-rate N")
    target: Target = request.getfixturevalue("target")
    run = soak_run(
        target,
        request.config.getoption("soak_duration"),
        rate,
        request.config.getoption("soak_window"),
    )
    write_soak(run, *report_paths())
    assert run.passed, report(run)
