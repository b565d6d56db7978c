"""The answers on the verdict and dead-letter topics, counted per event id by an independent
client: kcat (librdkafka) reading read_committed, what a subscriber sees. An event without an
answer is missing; an answer beyond an event's first is a duplicate."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from tests.system.exceptions import HarnessError

KCAT_FORMAT = "%k\t%p\t%o\t%T\n"


@dataclass(frozen=True)
class Row:
    """One record of a topic: its key, where it is, its timestamp (ms since the epoch)."""

    key: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True)
class Counts:
    """The answers (verdicts and dead letters) of some events, per event id."""

    events: int
    answered: int  # events with at least one answer
    missing: int  # events with none
    duplicates: int  # answers beyond each event's first
    duplicated_events: int  # events answered more than once
    unexpected: int  # answers to ids nobody asked about
    by_topic: dict[str, int]  # answers read from each topic
    reader: str  # "kcat", or the fallback and why

    @property
    def exact(self) -> bool:
        """Every event answered exactly once."""
        return self.missing == 0 and self.duplicates == 0

    def to_json(self) -> dict[str, Any]:
        """The counts as results record them."""
        return asdict(self)


def read_records(bootstrap: str, topic: str, committed_only: bool = True) -> tuple[list[Row], str]:
    """Every record of `topic` from the start, read with kcat, and the reader used (kafka-python
    where kcat is not installed). `committed_only`: read_committed, what a subscriber sees;
    else also what open and aborted transactions wrote."""
    isolation = "read_committed" if committed_only else "read_uncommitted"
    out = _kcat(bootstrap, topic, isolation, KCAT_FORMAT)
    if out is None:
        return _read_kafka_python(bootstrap, topic, isolation), "kafka-python (kcat not found)"
    rows = []
    for line in out.splitlines():
        key, partition, offset, timestamp = line.rsplit("\t", 3)
        rows.append(Row(key, int(partition), int(offset), int(timestamp)))
    return rows, "kcat"


def read_values(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    """(key, value) of every committed record of `topic` (one-line JSON values), read by kcat."""
    out = _kcat(bootstrap, topic, "read_committed", "%k\t%s\n")
    if out is None:
        raise HarnessError("kcat not found: install it (the README's prerequisites)")
    return [(key, value) for key, value in (line.split("\t", 1) for line in out.splitlines())]


def _kcat(bootstrap: str, topic: str, isolation: str, fmt: str) -> str | None:
    """kcat's output for every record of `topic` from the start; None without kcat."""
    kcat = shutil.which("kcat")
    if kcat is None:
        return None
    command = [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"]
    command += ["-X", f"isolation.level={isolation}", "-f", fmt]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"kcat could not read {topic} from {bootstrap}: {exc}") from exc
    return done.stdout


def _read_kafka_python(bootstrap: str, topic: str, isolation: str) -> list[Row]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        return [
            Row(r.key.decode() if r.key else "", r.partition, r.offset, r.timestamp)
            for r in consumer
        ]
    finally:
        consumer.close()


def count_answers(bootstrap: str, topics: Sequence[str], event_ids: Sequence[str]) -> Counts:
    """Count the answers to `event_ids` on `topics` (the verdict and dead-letter topics),
    whose record key is the event id."""
    copies: Counter[str] = Counter()
    by_topic: dict[str, int] = {}
    readers = set()
    for topic in topics:
        rows, reader = read_records(bootstrap, topic)
        readers.add(reader)
        by_topic[topic] = len(rows)
        copies.update(row.key for row in rows)
    wanted = set(event_ids)
    answered = sum(1 for i in wanted if copies[i])
    twice = {i: n for i, n in copies.items() if i in wanted and n > 1}
    return Counts(
        events=len(wanted),
        answered=answered,
        missing=len(wanted) - answered,
        duplicates=sum(n - 1 for n in twice.values()),
        duplicated_events=len(twice),
        unexpected=sum(n for i, n in copies.items() if i not in wanted),
        by_topic=by_topic,
        reader=" and ".join(sorted(readers)),
    )


def copies_written(bootstrap: str, topic: str) -> int:
    """Records of `topic` whose key an earlier record already had (a publisher's retries)."""
    rows, _ = read_records(bootstrap, topic)
    return sum(n - 1 for n in Counter(row.key for row in rows).values() if n > 1)


def answer_times(bootstrap: str, topic: str) -> dict[str, float]:
    """Each event's first answer on `topic`: when it was produced (its record's timestamp,
    seconds since the epoch)."""
    rows, _ = read_records(bootstrap, topic)
    times: dict[str, float] = {}
    for row in rows:
        times.setdefault(row.key, row.timestamp_ms / 1000)
    return times
