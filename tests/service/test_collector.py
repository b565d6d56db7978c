"""Collecting the verdicts of published events: which events, when they were answered, how
long to wait."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from kafka import KafkaConsumer

from geoverdict_service.collector import Collected, VerdictCollector

PRODUCED = "2026-01-01T00:00:10+00:00"
PRODUCED_S = 1767225610.0


@dataclass
class Record:
    key: bytes | None
    value: bytes
    timestamp: int = -1


class FakeConsumer:
    """Hands out its batches one per iteration, as a consumer does until its timeout."""

    def __init__(self, *batches: list[Record]) -> None:
        self.batches = list(batches)
        self.closed = False

    def __iter__(self) -> Iterator[Record]:
        if self.batches:
            yield from self.batches.pop(0)
        else:
            time.sleep(0.01)  # nothing arrives: the consumer's timeout passes

    def close(self) -> None:
        self.closed = True


def verdict(event_id: str, **fields: Any) -> Record:
    return Record(event_id.encode(), json.dumps({"id": event_id, **fields}).encode())


def collector(*batches: list[Record]) -> VerdictCollector:
    return VerdictCollector(cast(KafkaConsumer, FakeConsumer(*batches)))


def test_only_the_events_asked_for_are_collected_once_each_with_their_latency() -> None:
    batches = (
        [verdict("other", produced_at=PRODUCED), verdict("a", produced_at=PRODUCED)],
        [
            verdict("a", produced_at="2026-01-01T00:00:30+00:00"),  # a replay: the first counts
            verdict("b", produced_at=PRODUCED),
        ],
    )
    shown: list[str] = []
    got = collector(*batches).collect(
        {"a": PRODUCED_S - 2.0, "b": PRODUCED_S - 0.5},
        timeout_s=5,
        on_verdict=lambda v: shown.append(v["id"]),
    )
    assert list(got.answers) == ["a", "b"] and shown == ["a", "b"]
    assert got.latencies_s == pytest.approx([2.0, 0.5])
    assert got.seconds == pytest.approx(2.0) and got.per_s == pytest.approx(1.0)


def test_a_verdict_that_arrived_while_waiting_for_others_is_kept_for_later() -> None:
    # The warm-up's straggler shows up during the next run's wait; the warm-up asks again.
    verdicts = collector(
        [verdict("late", produced_at=PRODUCED), verdict("next", produced_at=PRODUCED)]
    )
    assert list(verdicts.collect({"next": 0.0}, timeout_s=5).answers) == ["next"]
    assert list(verdicts.collect({"late": 0.0}, timeout_s=0).answers) == ["late"]


def test_a_verdict_without_produced_at_is_timed_by_its_kafka_record() -> None:
    # The naive consumer's verdicts say nothing of when; their records do (the producer's clock).
    record = Record(b"n1", b'{"prediction": {}}', timestamp=1_767_225_612_500)
    got = collector([record, Record(b"n2", b"not json")]).collect({"n1": PRODUCED_S}, 5)
    assert got.answers["n1"].answered_at == pytest.approx(PRODUCED_S + 2.5)


def test_the_wait_ends_at_its_deadline_with_what_came() -> None:
    source = collector([verdict("a", produced_at=PRODUCED)])
    started = time.monotonic()
    got = source.collect({"a": PRODUCED_S, "never": PRODUCED_S}, timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert list(got.answers) == ["a"] and len(got.sent_at) == 2
    assert got.verdicts == [{"id": "a", "produced_at": PRODUCED}]


def test_nothing_answered_has_no_rate() -> None:
    assert Collected({"a": time.time()}, {}).per_s == 0.0
    assert Collected({}, {}).seconds == 0.0
