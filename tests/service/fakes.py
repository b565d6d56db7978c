"""In-memory stand-ins for the verdict service's parts, for unit tests that run in milliseconds.

They keep the real clients' rules that matter to the loop: the producer refuses a record
larger than its limit (as a failed future, like kafka-python) and one with neither key nor
value (an AssertionError, like kafka-python); the consumer hands out records from positions,
honours seek, pause and commit; the inference client answers per image or is unavailable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, MessageSizeTooLargeError

from geoverdict_service.exceptions import BadImageError, InferenceUnavailableError
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.items import Item
from geoverdict_service.settings import KafkaSettings, ServiceSettings, TorchServeSettings
from tests.service import samples

INPUT = "images"
VERDICTS = "verdicts"
DEAD = "dead"


def settings(**overrides: Any) -> ServiceSettings:
    """Settings built without the environment (fakes need no servers)."""
    kafka = KafkaSettings(
        bootstrap_servers="fake:9092",
        input_topic=INPUT,
        verdict_topic=VERDICTS,
        dead_letter_topic=DEAD,
        **overrides.pop("kafka", {}),
    )
    torchserve = TorchServeSettings(token="t")
    # The at-least-once rules by default; the exactly-once tests ask for theirs.
    values: dict[str, Any] = {
        "redis_url": None,
        "shutdown_timeout_s": 1.0,
        "processing_guarantee": "at_least_once",
        **overrides,
    }
    return ServiceSettings(kafka=kafka, torchserve=torchserve, **values)


def record(
    partition: int, offset: int, value: bytes | None, key: bytes | None = None
) -> ConsumerRecord:
    """A consumed record of the input topic."""
    return ConsumerRecord(
        INPUT,
        partition,
        -1,
        offset,
        1_700_000_000_000,
        0,
        key,
        value,
        [],
        None,
        len(key or b""),
        len(value or b""),
        0,
    )


def item(partition: int, offset: int, image: bytes | None = None) -> Item:
    """A polled record's item as intake leaves it: its image at hand and hashed."""
    return Item(
        TopicPartition(INPUT, partition),
        record(partition, offset, b"{}"),
        image=image,
        sha256=hashlib.sha256(image).hexdigest() if image is not None else "",
    )


class FakeConsumer:
    """Partitions of the input topic as lists; positions, pauses and commits as a broker's."""

    def __init__(self, partitions: int = 2, max_poll_records: int = 500) -> None:
        self.log: dict[TopicPartition, list[ConsumerRecord]] = {
            TopicPartition(INPUT, p): [] for p in range(partitions)
        }
        self.positions = dict.fromkeys(self.log, 0)
        self.committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._assigned: set[TopicPartition] = set()
        self.max_poll_records = max_poll_records
        self.closed = False

    def append(self, partition: int, value: bytes | None, key: bytes | None = None) -> None:
        """Produce a record into the input topic."""
        tp = TopicPartition(INPUT, partition)
        self.log[tp].append(record(partition, len(self.log[tp]), value, key))

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self._assigned = set(self.log)
        listener.on_partitions_assigned(set(self.log))

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        batch: dict[TopicPartition, list[ConsumerRecord]] = {}
        budget = self.max_poll_records
        for tp in sorted(self._assigned - self._paused):
            records = self.log[tp][self.positions[tp] : self.positions[tp] + budget]
            if records:
                batch[tp] = records
                self.positions[tp] += len(records)
                budget -= len(records)
        return batch

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Any) -> None:
        self.commit(offsets)
        callback(offsets, {})

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def highwater(self, partition: TopicPartition) -> int:
        return len(self.log[partition])

    def position(self, partition: TopicPartition, timeout_ms: int) -> int:
        return self.positions[partition]

    def close(self, autocommit: bool) -> None:
        self.closed = True


@dataclass
class Sent:
    """A record the fake broker acknowledged."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def header(self) -> dict[str, str]:
        """Headers decoded (they must be UTF-8: a real consumer reads them as such)."""
        return {name: value.decode("utf-8") for name, value in self.headers}


class FakeFuture:
    """A produce future: acknowledged, or failed with a Kafka error."""

    def __init__(self, error: KafkaError | None = None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error


@dataclass
class FakeProducer:
    """Acknowledges what fits; `max_request_size` is the client's limit, `broker_limit` the
    broker's (a failure only the acknowledgement shows); `fail_all` refuses every record."""

    max_request_size: int = 1_048_588
    broker_limit: int | None = None
    fail_all: KafkaError | None = None
    sent: list[Sent] = field(default_factory=list)

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FakeFuture:
        if value is None and key is None:
            raise AssertionError("Need at least one: key or value")  # as kafka-python does
        for name, data in headers or []:
            if not isinstance(name, str) or not isinstance(data, bytes):
                raise AssertionError("headers must be (str, bytes)")
            name.encode("utf-8")  # raises UnicodeEncodeError where kafka-python would
        size = len(key or b"") + len(value or b"") + sum(len(v) for _, v in headers or [])
        if size > self.max_request_size:
            return FakeFuture(MessageSizeTooLargeError(f"{size} bytes"))
        if self.fail_all is not None:
            return FakeFuture(self.fail_all)
        if self.broker_limit is not None and size > self.broker_limit:
            return FakeFuture(MessageSizeTooLargeError("broker: message too large"))
        self.sent.append(Sent(topic, key, value, list(headers or [])))
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None

    def on(self, topic: str) -> list[Sent]:
        """What was acknowledged on one topic."""
        return [s for s in self.sent if s.topic == topic]


Answer = Callable[[bytes], dict[str, Any]]


def city_for(image: bytes) -> dict[str, Any]:
    """A contract-valid prediction that depends on the image, like a real model's."""
    cities = [samples.PARIS, samples.NEW_YORK, samples.TOKYO, samples.SYDNEY]
    first = hashlib.sha256(image).digest()[0] % len(cities)
    ordered = cities[first:] + cities[:first]
    return dict(samples.prediction(list(zip(ordered, [0.7, 0.2, 0.06, 0.04], strict=True))))


class FakeInference:
    """Answers each image with `answer(image)` (raise BadImageError for a bad one), or is
    unavailable; counts what it was asked."""

    def __init__(self, answer: Answer = city_for) -> None:
        self.answer = answer
        self.unavailable = False
        self.requests: list[bytes] = []  # every image asked
        self.calls: list[list[bytes]] = []  # the images of each submit_many

    def submit_many(self, images: Sequence[bytes]) -> list[Future[dict[str, Any]]]:
        self.calls.append(list(images))
        return [self._answer(image) for image in images]

    def _answer(self, image: bytes) -> Future[dict[str, Any]]:
        self.requests.append(image)
        future: Future[dict[str, Any]] = Future()
        if self.unavailable:
            future.set_exception(InferenceUnavailableError("model server down (fake)"))
            return future
        try:
            future.set_result(self.answer(image))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def healthy(self) -> bool:
        return not self.unavailable

    def model_version(self) -> str | None:
        return None if self.unavailable else samples.MODEL_VERSION

    def close(self) -> None:
        return None


def bad_image(image: bytes) -> dict[str, Any]:
    """The handler's per-image error."""
    raise BadImageError("not an image", "undecodable", samples.MODEL_VERSION)


class FakeCache:
    """A dict with Redis' interface as the loop sees it."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self.store: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        return self._enabled

    def available(self) -> bool:
        return self._enabled

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        return [self.store.get(k) for k in keys]

    def set_many(self, items: dict[str, Any]) -> None:
        self.store.update(json.loads(json.dumps(items)))

    def close(self) -> None:
        return None


class BrokenCache(FakeCache):
    """A cache whose client raises what nobody foresaw: the loop must fail open around it."""

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        raise RuntimeError("connection pool exploded")

    def set_many(self, items: dict[str, Any]) -> None:
        raise RuntimeError("connection pool exploded")


@dataclass
class Parts:
    """A service and the fakes it was built from."""

    consumer: FakeConsumer
    producer: FakeProducer
    inference: FakeInference
    cache: FakeCache
    metrics: Metrics
    transactions: FakeTransactions | None = None  # exactly_once


def build(
    consumer: FakeConsumer | None = None,
    producer: FakeProducer | None = None,
    inference: FakeInference | None = None,
    cache: FakeCache | None = None,
    fetch: Callable[[str], bytes] | None = None,
    exactly_once: bool = False,
    **setting_overrides: Any,
) -> tuple[Any, Parts]:
    """A VerdictService on fakes, subscribed and knowing its model version; `exactly_once`:
    with transactional producers on FakeTransactions (parts.transactions)."""
    from geoverdict_service.consumer import VerdictService

    parts = Parts(
        consumer or FakeConsumer(),
        producer or FakeProducer(),
        inference or FakeInference(),
        cache or FakeCache(),
        Metrics(),
    )
    if exactly_once:
        parts.transactions = FakeTransactions(parts.consumer)
        setting_overrides["processing_guarantee"] = "exactly_once"
    service = VerdictService(
        settings(**setting_overrides),
        consumer=parts.consumer,
        producer=None if exactly_once else parts.producer,
        transactional=parts.transactions.make if parts.transactions else None,
        inference=parts.inference,
        cache=parts.cache,
        metrics=parts.metrics,
        places=None,
        fetch=fetch,
    )
    service.subscribe()
    service.predictions.learn_model_version(parts.inference.model_version())
    return service, parts


def step(service: Any, parts: Parts) -> int:
    """One poll and its processing, as the loop does it; returns the records polled."""
    batch = parts.consumer.poll(timeout_ms=0)
    if batch:
        service.process(batch)
    return sum(len(records) for records in batch.values())


class FakeTransactions:
    """A broker's transactions as the exactly-once rules see them: records a transactional
    producer sends become visible (to a read_committed reader) and its offsets committed only
    at its commit; an abort drops both; a newer producer of the same id fences the older."""

    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer
        self.visible: list[Sent] = []  # what a read_committed reader sees, in commit order
        self.epochs: dict[str, int] = {}  # transactional id -> the live producer's epoch
        self.producers: list[FakeTransactionalProducer] = []
        # failure injection: the next init/begin/send/offsets/commit of any producer raises this
        self.fail: dict[str, KafkaError] = {}

    def make(self, transactional_id: str) -> FakeTransactionalProducer:
        """What the service's factory returns."""
        producer = FakeTransactionalProducer(self, transactional_id)
        self.producers.append(producer)
        return producer

    def on(self, topic: str) -> list[Sent]:
        """What a read_committed reader sees on one topic."""
        return [s for s in self.visible if s.topic == topic]


class FakeTransactionalProducer(FakeProducer):
    """A transactional KafkaProducer against FakeTransactions."""

    def __init__(self, broker: FakeTransactions, transactional_id: str) -> None:
        super().__init__()
        self.broker = broker
        self.transactional_id = transactional_id
        self.epoch = -1
        self.open = False
        self.offsets: dict[TopicPartition, int] = {}
        self.closed = False
        self.aborts = 0

    def _maybe_fail(self, step: str) -> None:
        if self.broker.epochs.get(self.transactional_id) != self.epoch:
            from kafka.errors import ProducerFencedError

            raise ProducerFencedError(f"{self.transactional_id} has a newer producer")
        error = self.broker.fail.pop(step, None)
        if error is not None:
            raise error

    def init_transactions(self) -> None:
        error = self.broker.fail.pop("init", None)
        if error is not None:
            raise error
        self.epoch = self.broker.epochs.get(self.transactional_id, -1) + 1
        self.broker.epochs[self.transactional_id] = self.epoch  # fences the former producer

    def begin_transaction(self) -> None:
        self._maybe_fail("begin")
        self.open, self.sent, self.offsets = True, [], {}

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FakeFuture:
        if not self.open:
            raise AssertionError("a transactional producer sends inside a transaction")
        error = self.broker.fail.pop("send", None)
        if error is not None:
            return FakeFuture(error)
        return super().send(topic, value, key, headers)

    def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], consumer_group_id: str
    ) -> None:
        self._maybe_fail("offsets")
        self.offsets.update({tp: meta.offset for tp, meta in offsets.items()})

    def commit_transaction(self) -> None:
        self._maybe_fail("commit")
        self.broker.visible.extend(self.sent)
        self.broker.consumer.committed.update(self.offsets)
        self.open, self.sent, self.offsets = False, [], {}

    def abort_transaction(self) -> None:
        self._maybe_fail("abort")
        self.aborts += 1
        self.open, self.sent, self.offsets = False, [], {}

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
