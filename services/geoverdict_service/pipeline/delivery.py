"""Answers out: each item's verdict or dead letter produced, Kafka's acks awaited; counted once
committed (at once with at_least_once, after its transaction with exactly_once).

A record whose verdict or dead letter would not fit the broker's limit (ours, or a lower one
that only the broker's refusal shows) is dead-lettered as a reference instead. Kafka not
acknowledging raises ServiceError: then nothing of the batch is committed and it comes again.
"""

from __future__ import annotations

import logging
import time

from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from geoverdict_service.dead_letters import (
    DeadLetter,
    dead_letter,
    printable,
    record_size,
    reference,
    without_content,
)
from geoverdict_service.exceptions import InternalError, ServiceError
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.items import Item, Output
from geoverdict_service.pipeline.parts import Producer, SendFuture
from geoverdict_service.settings import ServiceSettings

log = logging.getLogger(__name__)

# A broker's own limit (message.max.bytes, a topic's max.message.bytes) may be below ours.
TOO_LARGE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError)
Delivered = list[tuple[Item, Output]]  # acknowledged answers, in order


class BrokerRefusedError(ServiceError):
    """In a transaction, the broker refused copies as too large: the transaction cannot commit
    any more; the batch comes again, these records then dead-lettered as references."""

    def __init__(self, items: list[Item]) -> None:
        super().__init__(f"{len(items)} answers larger than the broker takes")
        self.items = items


class Delivery:
    """Produces the answers of a batch and returns once Kafka acknowledged every one."""

    def __init__(
        self, producer: Producer | None, metrics: Metrics, settings: ServiceSettings
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._verdict_topic = settings.kafka.verdict_topic
        self._dead_letter_topic = settings.kafka.dead_letter_topic
        self._max_bytes = settings.kafka.max_message_bytes
        self._letter_payload = settings.dead_letter_payload
        self._flush_timeout_s = settings.shutdown_timeout_s
        # Records whose copy a broker refused in an aborted transaction: references next time.
        self._as_reference: set[tuple[str, int, int]] = set()

    def deliver(
        self, items: list[Item], producer: Producer | None = None, transaction: bool = False
    ) -> Delivered:
        """Send each item's verdict or dead letter (with `producer`, default the service's) and
        wait for Kafka's acks; returns what was acknowledged, to count once it is committed.

        Raises ServiceError when Kafka does not acknowledge: then nothing may be committed; in a
        `transaction`, BrokerRefusedError when the broker refused a copy as too large (the
        transaction is lost; the records are sent as references when they come again)."""
        producer = producer or self._producer
        if producer is None:
            raise ServiceError("no producer to deliver with")
        sends: list[tuple[Item, Output, SendFuture]] = []
        for item in items:
            output = self._output(item)
            sends.append((item, output, self._send(producer, output)))
        self._flush(producer)
        delivered: Delivered = []
        refused: list[tuple[Item, Output]] = []
        for item, output, future in sends:
            if self._acknowledged(output, future):
                delivered.append((item, output))
            else:
                refused.append((item, output))
        if refused and transaction:
            self._as_reference.update(_place(item) for item, _ in refused)
            raise BrokerRefusedError([item for item, _ in refused])
        # The broker refused a copy as too large (its limit is below ours): send a reference.
        retries = [(item, self._reference(item, output)) for item, output in refused]
        futures = [(item, output, self._send(producer, output)) for item, output in retries]
        if futures:
            self._flush(producer)
        for item, output, future in futures:
            if not self._acknowledged(output, future):
                raise ServiceError(f"Kafka refused even the reference of a too-large {output.kind}")
            delivered.append((item, output))
        return delivered

    def count(self, delivered: Delivered) -> None:
        """The verdict and dead-letter metrics of answers now committed."""
        for item, output in delivered:
            self._count(item, output)

    def _output(self, item: Item) -> Output:
        """The verdict, the dead letter, or (when a copy would not fit) a reference."""
        if item.failure is None and item.payload is not None:
            output = Output(self._verdict_topic, item.key, item.payload, [], "verdict")
        else:
            failure = item.failure or InternalError("output", ServiceError("no answer"))
            if self._letter_payload == "reference":
                letter = without_content(item.record, failure, item.event_id, item.event)
            else:
                letter = dead_letter(item.record, failure, item.event_id)
            output = self._letter_output(letter)
            record = item.record
            log.info(
                "dead letter %s/%d@%d: %s: %s",
                record.topic,
                record.partition,
                record.offset,
                failure.reason,
                printable(str(failure), 300),
            )
        too_large = record_size(output.key, output.value, output.headers) > self._max_bytes
        if too_large or _place(item) in self._as_reference:
            self._as_reference.discard(_place(item))
            return self._reference(item, output)
        return output

    def _letter_output(self, letter: DeadLetter) -> Output:
        return Output(
            self._dead_letter_topic,
            letter.key,
            letter.value,
            letter.headers,
            "dead_letter",
            letter.reason,
        )

    def _reference(self, item: Item, output: Output) -> Output:
        original = output.reason or (item.failure.reason if item.failure else output.kind)
        log.warning(
            "%s/%d@%d: its %s would exceed the broker's %d-byte message limit: "
            "dead-lettered as a reference",
            item.record.topic,
            item.record.partition,
            item.record.offset,
            output.kind,
            self._max_bytes,
        )
        return self._letter_output(reference(item.record, original, item.event_id))

    def _send(self, producer: Producer, output: Output) -> SendFuture:
        try:
            return producer.send(
                output.topic, key=output.key, value=output.value, headers=output.headers or None
            )
        except KafkaError as exc:
            raise ServiceError(f"Kafka did not take a {output.kind}: {exc}") from exc

    def _flush(self, producer: Producer) -> None:
        try:
            producer.flush(timeout=self._flush_timeout_s)
        except KafkaError as exc:
            raise ServiceError(f"Kafka did not acknowledge in time: {exc}") from exc

    @staticmethod
    def _acknowledged(output: Output, future: SendFuture) -> bool:
        """True when acknowledged; False when refused as too large; raises otherwise."""
        try:
            future.get(timeout=0)
        except TOO_LARGE_ERRORS:
            return False
        except KafkaError as exc:
            # Not acknowledged: do not commit; crash and let the group replay the batch.
            raise ServiceError(f"Kafka did not acknowledge a {output.kind}: {exc}") from exc
        return True

    def _count(self, item: Item, output: Output) -> None:
        if output.kind == "dead_letter":
            self._metrics.dead_letters.labels(reason=output.reason or "unknown").inc()
            return
        kind = {"exact": "hit", "near_duplicate": "near_duplicate"}.get(
            item.cache_hit or "", "miss"
        )
        self._metrics.verdicts.labels(cache=kind).inc()
        self._metrics.end_to_end.observe(max(0.0, time.time() - _event_time(item)))
        verdict = item.verdict
        if verdict is None:
            return
        scene = verdict["scene"].get("s3")
        if scene is not None:
            self._metrics.scenes.labels(scene=scene["label"]).inc()
        for check in verdict["consistency"]:
            if check["location_mismatch"]:
                self._metrics.mismatches.labels(claim_source=check["claim_source"]).inc()
        provenance = verdict["provenance"]
        self._metrics.c2pa_states.labels(state=provenance["c2pa"]["state"]).inc()
        if provenance["c2pa"]["ai_generated"]:
            self._metrics.ai_generated.inc()
        if provenance["recycled_claim"]:
            self._metrics.recycled_claims.inc()


def _event_time(item: Item) -> float:
    if item.event is not None and item.event.time is not None:
        return item.event.time.timestamp()
    return float(item.record.timestamp) / 1000.0


def _place(item: Item) -> tuple[str, int, int]:
    return item.record.topic, item.record.partition, item.record.offset
