"""SIGTERM: a graceful stop that always ends within the shutdown timeout."""

from __future__ import annotations

import signal
import threading

from geoverdict_service.shutdown import FORCED_EXIT_STATUS, GracefulShutdown


def test_a_stop_that_takes_too_long_ends_the_process_anyway() -> None:
    exited = threading.Event()
    statuses: list[int] = []
    stops: list[bool] = []

    def fake_exit(status: int) -> None:
        statuses.append(status)
        exited.set()

    shutdown = GracefulShutdown(0.2, on_stop=lambda: stops.append(True), exit=fake_exit)
    shutdown.handle(signal.SIGTERM)
    assert stops == [True] and shutdown.requested.is_set()
    assert exited.wait(5)  # the loop never finished: the watchdog fired
    assert statuses == [FORCED_EXIT_STATUS]


def test_a_stop_in_time_is_not_forced() -> None:
    statuses: list[int] = []
    shutdown = GracefulShutdown(0.2, on_stop=lambda: None, exit=statuses.append)
    shutdown.handle(signal.SIGTERM)
    shutdown.cancel()
    threading.Event().wait(0.4)
    assert statuses == []


def test_a_second_signal_exits_at_once() -> None:
    statuses: list[int] = []
    shutdown = GracefulShutdown(60, on_stop=lambda: None, exit=statuses.append)
    shutdown.handle(signal.SIGTERM)
    shutdown.handle(signal.SIGINT)
    shutdown.cancel()
    assert statuses == [128 + signal.SIGINT]
