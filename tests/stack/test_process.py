"""A started server is found again after the wall clock steps, and a recycled PID is not."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from geoverdict_stack import process


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[process.ProcessRecord]:
    record = process.spawn(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        tmp_path / "s.log",
        tmp_path,
    )
    yield record
    process.stop(record, timeout=5)


def test_a_started_process_is_found_again_after_the_clock_steps(
    sleeper: process.ProcessRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sleeper.process() is not None
    # An NTP step moves psutil's boot time, and with it every process's create_time.
    boot = psutil.boot_time()
    monkeypatch.setattr(psutil, "boot_time", lambda: boot + 30.0)
    created = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: created(self) + 30.0)
    assert sleeper.process() is not None
    # A record written before the start after boot was kept is checked as before.
    legacy = dataclasses.replace(sleeper, started_after_boot=None)
    assert legacy.process() is None


def test_a_pid_that_now_belongs_to_a_later_process_is_not_ours(
    sleeper: process.ProcessRecord,
) -> None:
    assert sleeper.started_after_boot is not None
    earlier = dataclasses.replace(sleeper, started_after_boot=sleeper.started_after_boot - 10.0)
    assert earlier.process() is None
    process.stop(sleeper, timeout=5)
    assert sleeper.process() is None
