"""Collect the verdicts of events one published, and how long each took (the demo, the
benchmarks).

A verdict answers the event whose id it carries. Its answer time is the verdict's own
`produced_at` (the consumer's clock, when it built the verdict), else the Kafka record's
timestamp (when its producer sent it): never the time this process happened to read it, so a
collector that reads after publishing measures the same latencies as one reading all along.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from tqdm import tqdm

from geoverdict_service.kafka_clients import make_subscriber
from geoverdict_service.settings import KafkaSettings
from geoverdict_service.watcher import records

POLL_TIMEOUT_S = 0.2  # how often a wait looks at its deadline while no verdict arrives


@dataclass(frozen=True)
class Answer:
    """The first verdict of one event, and when it was produced (seconds since the epoch)."""

    verdict: dict[str, Any]
    answered_at: float


@dataclass(frozen=True)
class Collected:
    """The verdicts of some published events, in the order they arrived."""

    sent_at: Mapping[str, float]  # event id -> when it was sent (seconds since the epoch)
    answers: Mapping[str, Answer]  # event id -> its verdict, for the events answered in time

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        """The verdicts, in the order they arrived."""
        return [answer.verdict for answer in self.answers.values()]

    @property
    def latencies_s(self) -> list[float]:
        """End to end, from each event's send to its verdict."""
        return [a.answered_at - self.sent_at[event_id] for event_id, a in self.answers.items()]

    @property
    def seconds(self) -> float:
        """From the first event sent to the last verdict produced."""
        if not self.sent_at:
            return 0.0
        last = max((a.answered_at for a in self.answers.values()), default=time.time())
        return max(last - min(self.sent_at.values()), 1e-9)

    @property
    def per_s(self) -> float:
        """Verdicts per second over `seconds`."""
        return len(self.answers) / self.seconds if self.answers else 0.0


class VerdictCollector:
    """Reads a verdict topic and keeps the first verdict of every event id it sees, so that a
    wait for some events also keeps what arrived for others (an earlier run's stragglers)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer  # subscribed, with a consumer_timeout_ms
        self._answers: dict[str, Answer] = {}

    @classmethod
    def from_settings(
        cls,
        kafka: KafkaSettings,
        topic: str | None = None,
        *,
        group_id: str | None = None,
        from_beginning: bool = True,
        **options: Any,
    ) -> VerdictCollector:
        """A collector of `topic` (default: the verdict topic); without a group it commits
        nothing and, `from_beginning`, reads what the topic already holds."""
        consumer = make_subscriber(
            kafka,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            consumer_timeout_ms=int(POLL_TIMEOUT_S * 1000),
            **options,
        )
        consumer.subscribe([topic or kafka.verdict_topic])
        return cls(consumer)

    def collect(
        self,
        sent_at: Mapping[str, float],
        timeout_s: float,
        *,
        on_verdict: Callable[[dict[str, Any]], None] | None = None,
        progress: str | None = None,
    ) -> Collected:
        """The verdicts of the events in `sent_at` (event id -> send time), waiting at most
        `timeout_s` for the last; `on_verdict` sees each as it arrives, `progress` names a
        progress bar."""
        wanted = set(sent_at)
        got = {id_: self._answers[id_] for id_ in sent_at if id_ in self._answers}
        deadline = time.monotonic() + timeout_s
        with tqdm(
            total=len(wanted),
            desc=progress,
            unit="verdict",
            leave=False,
            disable=progress is None,
            initial=len(got),
        ) as bar:
            while len(got) < len(wanted) and time.monotonic() < deadline:
                for event_id, answer in self._read(deadline):
                    if event_id in wanted and event_id not in got:
                        got[event_id] = answer
                        bar.update(1)
                        if on_verdict is not None:
                            on_verdict(answer.verdict)
                    if len(got) == len(wanted):
                        break
        return Collected(sent_at, got)

    def _read(self, deadline: float) -> Iterator[tuple[str, Answer]]:
        """Verdicts of event ids not seen before, as they arrive, until the consumer's timeout
        or the deadline."""
        for record, verdict in records(self._consumer):
            event_id = _event_id(record, verdict)
            if event_id and event_id not in self._answers:
                self._answers[event_id] = Answer(verdict, _answered_at(record, verdict))
                yield event_id, self._answers[event_id]
            if time.monotonic() >= deadline:
                return

    def close(self) -> None:
        """Stop reading."""
        self._consumer.close()

    def __enter__(self) -> VerdictCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _event_id(record: ConsumerRecord, verdict: dict[str, Any]) -> str:
    """The verdict's `id`, else its record's key."""
    event_id = verdict.get("id")
    if isinstance(event_id, str):
        return event_id
    return record.key.decode(errors="replace") if record.key else ""


def _answered_at(record: ConsumerRecord, verdict: dict[str, Any]) -> float:
    produced = verdict.get("produced_at")
    if isinstance(produced, str):
        try:
            return datetime.fromisoformat(produced).timestamp()
        except ValueError:
            pass
    if record.timestamp is not None and record.timestamp >= 0:
        return record.timestamp / 1000.0  # CreateTime in ms: when its producer sent it
    return time.time()
