"""The soak: one exactly-once consumer answering a steady stream for an hour (or as long as
asked), watched every few minutes (its resident memory, the group's lag, the p99 of the events
answered in that window), counted per event id at the end by kcat read_committed. Run by
`pytest tests/system/test_soak.py --full-size --soak-rate N`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from benchmarks.streams import percentile
from benchmarks.topics import Topics
from tests.system.answers import Counts, answer_times, count_answers
from tests.system.consumers import GroupView
from tests.system.exactly_once import Stream, Target
from tests.system.exceptions import HarnessError

RSS_GROWTH_LIMIT = 0.10  # the bound on memory growth over the hour


@dataclass(frozen=True)
class Window:
    """One window of the soak: when it ended (seconds in), the consumer's resident memory
    then, the group's lag then, and the latency of the events published inside it."""

    end_s: float
    rss_mb: float
    lag: int
    answered: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class SoakRun:
    """The whole soak."""

    guarantee: str
    rate: float
    duration_s: float
    events: int
    window_s: float
    rss_start_mb: float  # once the consumer answered its first window's events
    rss_end_mb: float
    windows: list[Window]
    counts: Counts
    seconds: float
    exit_status: int | None

    @property
    def rss_growth(self) -> float:
        """Resident memory at the end over the start, minus 1."""
        return self.rss_end_mb / self.rss_start_mb - 1 if self.rss_start_mb else 0.0

    @property
    def passed(self) -> bool:
        """0 missing, 0 duplicates, memory grew by at most RSS_GROWTH_LIMIT."""
        return self.counts.exact and self.rss_growth <= RSS_GROWTH_LIMIT

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, with the growth and the verdict."""
        return {**asdict(self), "rss_growth": round(self.rss_growth, 4), "passed": self.passed}


def soak_run(
    target: Target,
    duration_s: float = 3600.0,
    rate: float = 40.0,
    window_s: float = 300.0,
    guarantee: str = "exactly_once",
    partitions: int = 4,
) -> SoakRun:
    """Publish `rate` events/s for `duration_s` to a consumer of its own; every `window_s`
    record its memory and the lag; at the end wait for the last answers and count them."""
    if rate <= 0 or duration_s <= 0 or window_s <= 0:
        raise HarnessError("the soak's rate, duration and window must be > 0")
    events = round(duration_s * rate)
    topics = Topics.create(target.bootstrap, partitions, prefix="soak")
    view = GroupView(topics)
    consumer = target.consumers(topics, guarantee, "soak")()
    memory = psutil.Process(consumer.pid)
    samples: list[tuple[float, float, int]] = []  # seconds in, RSS MB, lag
    try:
        view.wait_members(1, 90)
        began_wall, began = time.time(), time.monotonic()
        stream = Stream(target, topics.input, events, rate, prefix=f"soak-{topics.group}")
        while not stream.done():
            next_at = began + (len(samples) + 1) * window_s
            while time.monotonic() < next_at and not stream.done():
                if not consumer.alive():
                    raise HarnessError(f"the soak's consumer exited:\n{consumer.log_tail()}")
                time.sleep(1.0)
            samples.append((time.monotonic() - began, memory.memory_info().rss / 2**20, view.lag()))
            print(
                f"soak: {samples[-1][0]:.0f} s, RSS {samples[-1][1]:.1f} MB, lag {samples[-1][2]}",
                flush=True,
            )
        stream.join()
        view.wait_done(120.0 + events / 100)
        seconds = time.monotonic() - began
        rss_end = memory.memory_info().rss / 2**20
        counts = count_answers(target.bootstrap, (topics.verdicts, topics.dead), stream.ids)
        stamps = answer_times(target.bootstrap, topics.verdicts)
        status = consumer.stop()
    finally:
        if consumer.alive():
            consumer.kill()
        view.close()
    windows = _windows(samples, stream.sent_at, stamps, began_wall)
    return SoakRun(
        guarantee,
        rate,
        duration_s,
        events,
        window_s,
        windows[0].rss_mb if windows else rss_end,
        rss_end,
        windows,
        counts,
        round(seconds, 1),
        status,
    )


def _windows(
    samples: list[tuple[float, float, int]],
    sent_at: dict[str, float],
    stamps: dict[str, float],
    began_wall: float,
) -> list[Window]:
    """Each sample with the latency of the events sent in the window it closes."""
    windows = []
    start = 0.0
    for end_s, rss_mb, lag in samples:
        waited = [
            (stamps[i] - sent) * 1000
            for i, sent in sent_at.items()
            if i in stamps and start <= sent - began_wall < end_s
        ]
        windows.append(
            Window(
                round(end_s, 1),
                round(rss_mb, 1),
                lag,
                len(waited),
                round(percentile(waited, 50), 1),
                round(percentile(waited, 99), 1),
            )
        )
        start = end_s
    return windows


def report(run: SoakRun) -> str:
    """The soak as markdown: one row per window, then the totals."""
    lines = [
        f"Soak: {run.guarantee}, {run.rate:g} events/s for {run.duration_s / 60:.0f} min "
        f"({run.events} events, one consumer, kcat read_committed counting).",
        "",
        "| minute | consumer RSS (MB) | lag (records) | answered | p50 (ms) | p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {w.end_s / 60:.0f} | {w.rss_mb:.1f} | {w.lag} | {w.answered} | {w.p50_ms:.0f} "
        f"| {w.p99_ms:.0f} |"
        for w in run.windows
    ]
    c = run.counts
    lines += [
        "",
        f"Totals: {c.answered} of {c.events} answered, {c.missing} missing, {c.duplicates} "
        f"duplicates; RSS {run.rss_start_mb:.1f} MB after the first window, "
        f"{run.rss_end_mb:.1f} MB at the end ({run.rss_growth:+.1%}, bound "
        f"{RSS_GROWTH_LIMIT:+.0%}): {'passed' if run.passed else 'FAILED'}.",
    ]
    return "\n".join(lines)
