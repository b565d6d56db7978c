"""One polled record's state on its way through the stages, the record produced for it, and
the poison-pill guard every stage runs a record's step under."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from geoverdict_common.contract_types import CacheHit, Prediction, Provenance, Verdict
from geoverdict_service.dead_letters import printable
from geoverdict_service.events import ImageEvent
from geoverdict_service.exceptions import BadEventError, InternalError

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One polled record on its way to exactly one verdict or one dead letter."""

    tp: TopicPartition
    record: ConsumerRecord
    event: ImageEvent | None = None
    image: bytes | None = None
    sha256: str = ""
    failure: BadEventError | None = None
    prediction: Prediction | None = None
    cache_hit: CacheHit = False
    provenance: Provenance | None = None  # pipeline/provenance.py, before any prediction
    verdict: Verdict | None = None
    key: bytes | None = None  # the verdict's Kafka key: the event id, encoded
    payload: bytes | None = None  # the verdict, encoded
    timings_ms: dict[str, Any] = field(default_factory=dict)

    def fail(self, failure: BadEventError) -> None:
        """Record why this record becomes a dead letter (the first reason wins)."""
        if self.failure is None:
            self.failure = failure

    @property
    def needs_inference(self) -> bool:
        """An image is at hand but neither an answer nor a failure yet."""
        return self.image is not None and self.failure is None and self.prediction is None

    @property
    def answered(self) -> bool:
        """Its verdict is encoded or it failed: it has something to produce."""
        return self.failure is not None or self.payload is not None

    @property
    def event_id(self) -> str | None:
        """The event's id where it could be read, even from an event refused by the schema."""
        if self.event is not None:
            return self.event.id
        return self.failure.event_id if self.failure is not None else None


@dataclass(frozen=True)
class Output:
    """A record to produce for an item, and what kind of answer it is."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    kind: str  # "verdict" or "dead_letter"
    reason: str | None = None  # dead letters: the metric label


def guard(item: Item, step: str, work: Callable[[], None]) -> None:
    """Run one record's step; what it raises becomes that record's dead letter."""
    try:
        work()
    except BadEventError as exc:
        item.fail(exc)
    except Exception as exc:  # the poison-pill guard: nothing one record does stops the loop
        record = item.record
        # The message may quote the record: escaped, and the traceback without it.
        log.error(
            "unexpected error (%s) on %s/%d@%d, dead-lettered as internal: %s\n%s",
            step,
            record.topic,
            record.partition,
            record.offset,
            printable(repr(exc)),
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        item.fail(InternalError(step, exc))
