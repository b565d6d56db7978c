"""The verdict service's loop: Kafka in, Redis cache, TorchServe, verdicts and dead letters out.

At least once: a batch's offsets are committed only after Kafka acknowledged every verdict and
dead-letter record of it, so a crash replays (never loses) the batch. Processing is synchronous
per poll, so a rebalance (which kafka-python runs inside poll) never finds work in flight.

No poison pill: every step that touches one record runs under a guard, and whatever it raises
makes that record a dead letter (reason `internal` where nobody foresaw it), never a crash.
Only what is not the record's fault stops the loop: Kafka not acknowledging (nothing is
committed, the batch comes again) or TorchServe unavailable (the partitions pause).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from kafka import OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from geoverdict_service import contract
from geoverdict_service.backoff import Backoff
from geoverdict_service.cache import PredictionCache, RecentPredictions, cache_key
from geoverdict_service.contract_types import Prediction, Verdict
from geoverdict_service.dead_letters import (
    DeadLetter,
    dead_letter,
    printable,
    record_size,
    reference,
    without_content,
)
from geoverdict_service.events import ImageEvent, parse_event
from geoverdict_service.exceptions import (
    BadEventError,
    BadImageError,
    FetchError,
    InferenceUnavailableError,
    InternalError,
    KafkaUnavailableError,
    ServiceError,
)
from geoverdict_service.fetch import FetchPolicy, fetch_image
from geoverdict_service.geo import PlaceNames
from geoverdict_service.inference import InferenceClient, TokenSource
from geoverdict_service.kafka_clients import check_cluster, make_consumer, make_producer
from geoverdict_service.metrics import HealthServer, Metrics, loop_alive
from geoverdict_service.settings import ServiceSettings
from geoverdict_service.shutdown import GracefulShutdown
from geoverdict_service.verdicts import VerdictPolicy, build_verdict, private_prediction

log = logging.getLogger(__name__)

# A broker's own limit (message.max.bytes, a topic's max.message.bytes) may be below ours.
TOO_LARGE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError)


# -- the parts the loop is built from (kafka-python, InferenceClient and PredictionCache, or
#    the fakes of the unit tests) ----------------------------------------------------------------
class Consumer(Protocol):
    """What the loop uses of a KafkaConsumer."""

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None: ...
    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[ConsumerRecord]]: ...
    def commit_async(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Any
    ) -> Any: ...
    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def paused(self) -> set[TopicPartition]: ...
    def assignment(self) -> set[TopicPartition]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    def position(self, partition: TopicPartition, timeout_ms: int) -> int | None: ...
    def close(self, autocommit: bool) -> None: ...


class SendFuture(Protocol):
    """A produce request's future (kafka-python's FutureRecordMetadata)."""

    def get(self, timeout: float) -> Any: ...


class Producer(Protocol):
    """What the loop uses of a KafkaProducer."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> SendFuture: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...


class Inference(Protocol):
    """What the loop uses of the TorchServe client."""

    def submit(self, image: bytes) -> Future[dict[str, Any]]: ...
    def healthy(self) -> bool: ...
    def model_version(self) -> str | None: ...
    def close(self) -> None: ...


class Cache(Protocol):
    """What the loop uses of the prediction cache (which fails open)."""

    @property
    def enabled(self) -> bool: ...
    def available(self) -> bool: ...
    def get_many(self, keys: Sequence[str]) -> list[Any]: ...
    def set_many(self, items: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


# -- per-record state ----------------------------------------------------------------------
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
    cache_hit: bool = False
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
    def event_id(self) -> str | None:
        """The event's id where it could be read, even from an event refused by the schema."""
        if self.event is not None:
            return self.event.id
        return self.failure.event_id if self.failure is not None else None


@dataclass(frozen=True)
class _Output:
    """A record to produce for an item, and what kind of answer it is."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    kind: str  # "verdict" or "dead_letter"
    reason: str | None = None  # dead letters: the metric label


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: VerdictService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Every batch is committed before the next poll, so nothing is in flight here.
        log.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))
        self.service.on_assigned(assigned)


class VerdictService:
    """One consumer process of the verdict group, built from its parts."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        consumer: Consumer,
        producer: Producer,
        inference: Inference,
        cache: Cache,
        metrics: Metrics | None = None,
        places: PlaceNames | None = None,
        fetch: Callable[[str], bytes] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.inference = inference
        self.cache = cache
        self.metrics = metrics or Metrics()
        self.places = places
        self.policy = VerdictPolicy(
            top_k=settings.top_k,
            mismatch_threshold_km=settings.mismatch_threshold_km,
            mismatch_max_mass=settings.mismatch_max_mass,
            min_precision_km=settings.min_precision_km,
        )
        fetch_policy = FetchPolicy(
            allowed_hosts=settings.fetch_allowed_hosts,
            allow_private=settings.fetch_allow_private,
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
            retries=settings.fetch_retries,
        )
        self._fetch = fetch or (lambda url: fetch_image(url, fetch_policy))
        # A fetch with every retry and its backoff takes at most this long; then it is late.
        self._fetch_wait_s = (fetch_policy.retries + 1) * fetch_policy.timeout_s + (
            fetch_policy.backoff_s * 2**fetch_policy.retries + 1.0
        )
        self._max_bytes = settings.kafka.max_message_bytes
        self._fetch_pool = ThreadPoolExecutor(8, thread_name_prefix="fetch")
        self._stop = stop or threading.Event()
        self._paused = False
        self._resume_at = 0.0
        self._backoff = Backoff(settings.unavailable_backoff_s, settings.unavailable_max_backoff_s)
        self.model_version: str | None = None
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}  # last offsets committed
        self._recent: RecentPredictions[Prediction] = RecentPredictions(
            settings.cache_local_entries if cache.enabled else 0
        )
        self._health: HealthServer | None = None
        self.health_port: int | None = None

    @classmethod
    def from_settings(
        cls,
        settings: ServiceSettings,
        metrics: Metrics | None = None,
        places: PlaceNames | None = None,
        stop: threading.Event | None = None,
    ) -> VerdictService | None:
        """The real parts: Kafka clients (after a bounded start-up check), TorchServe, Redis.
        None when `stop` was set during start-up."""
        stop = stop or threading.Event()
        metrics = metrics or Metrics()
        ts = settings.torchserve
        token = ts.token.get_secret_value() if ts.token else None
        tokens = TokenSource(token, ts.key_file)  # no network: settle config errors first
        kafka = settings.kafka
        topics = {
            "input_topic": kafka.input_topic,
            "verdict_topic": kafka.verdict_topic,
            "dead_letter_topic": kafka.dead_letter_topic,
        }
        api_version = check_cluster(kafka, topics, stop)
        if api_version is None:
            return None
        inference = InferenceClient(
            ts.url, ts.model_name, tokens,
            concurrency=ts.concurrency, timeout_s=ts.timeout_s, retries=ts.retries,
            observe=metrics.inference_latency.observe,
        )  # fmt: skip
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""
        cache = PredictionCache(
            redis_url or None,  # empty: no cache
            settings.cache_ttl_s,
            timeout_s=settings.redis_timeout_s,
            on_error=lambda op: metrics.cache_errors.labels(operation=op).inc(),
        )
        client_id = f"geoverdict-{socket.gethostname()}-{os.getpid()}"
        consumer = make_consumer(
            kafka,
            api_version=api_version,
            client_id=client_id,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_poll_records,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
        )
        producer = make_producer(
            kafka, api_version=api_version, client_id=client_id, acks="all", linger_ms=5, retries=5
        )
        return cls(
            settings,
            consumer=consumer,
            producer=producer,
            inference=inference,
            cache=cache,
            metrics=metrics,
            places=places if places is not None else PlaceNames(),
            stop=stop,
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def start_health_server(self) -> int:
        """Serve /metrics, /healthz, /readyz; returns the port (0 in settings: a free one)."""
        self._health = HealthServer(
            self.metrics,
            self.settings.metrics_host,
            self.settings.metrics_port,
            alive=loop_alive(
                self.metrics, stall_after_s=max(60.0, self.settings.torchserve.timeout_s * 4)
            ),
            ready=self.readiness,
        )
        self._health.start()
        self.health_port = self._health.port
        return self._health.port

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        """/readyz: partitions assigned, TorchServe answers, Redis answers (when configured)."""
        checks = {
            "partitions_assigned": bool(self.consumer.assignment()),
            "torchserve": self.inference.healthy(),
            "redis": self.cache.available() if self.cache.enabled else True,
        }
        return all(checks.values()), checks

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and close (safe from a signal handler)."""
        self._stop.set()

    def run(self, max_idle_s: float | None = None) -> None:
        """Consume until stop() (or `max_idle_s` without messages, for demos and benchmarks)."""
        try:
            if self.places is not None:
                self.places.warm_up()
            self._learn_model_version(self.inference.model_version())
            if not self._wait_for_topic():
                return
            topic = self.settings.kafka.input_topic
            self.consumer.subscribe([topic], listener=_Rebalance(self))
            idle_since = time.monotonic()
            while not self._stop.is_set():
                self.metrics.last_loop.set_to_current_time()
                if self._paused:
                    self._maybe_resume()
                batch = self.consumer.poll(timeout_ms=200)
                if batch:
                    self.process(batch)
                    idle_since = time.monotonic()
                elif max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                    log.info("no message for %.0f s: stopping", max_idle_s)
                    break
                self._update_lag()
        finally:
            self.close()

    def _wait_for_topic(self) -> bool:
        """Wait until the consumer's client knows the input topic. A member that joins the
        group before that can be assigned nothing until its next metadata refresh (up to
        metadata.max.age, 5 minutes; seen with kafka-python 3.0). False when stopped first."""
        topic = self.settings.kafka.input_topic
        deadline = time.monotonic() + self.settings.kafka.connect_timeout_s
        while not self._stop.is_set():
            self.metrics.last_loop.set_to_current_time()
            if self.consumer.partitions_for_topic(topic):
                return True
            if time.monotonic() > deadline:
                raise KafkaUnavailableError(
                    f"input topic {topic!r} has no partitions after "
                    f"{self.settings.kafka.connect_timeout_s:.0f} s"
                )
            self._stop.wait(0.5)
        return False

    def close(self) -> None:
        """Flush, commit what was acknowledged, close every client."""
        try:
            self.producer.flush(timeout=self.settings.shutdown_timeout_s)
            self._final_commit()
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=self.settings.shutdown_timeout_s)
            self.inference.close()
            self.cache.close()
            self._fetch_pool.shutdown(wait=False, cancel_futures=True)
            if self._health is not None:
                self._health.stop()

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Keep newly assigned partitions paused while TorchServe is down."""
        self.metrics.assigned.set(len(self.consumer.assignment()))
        if self._paused and assigned:
            self.consumer.pause(*assigned)
            self.metrics.paused.set(len(self.consumer.paused()))

    # -- one batch -----------------------------------------------------------------------------
    def process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Turn one poll's records into verdicts and dead letters, then commit them."""
        started = time.perf_counter()
        items = [Item(tp, record) for tp, records in batch.items() for record in records]
        self.metrics.events.inc(len(items))
        self.metrics.batch_size.observe(len(items))

        self._parse_and_fetch(items)
        self._lookup_cache(items)
        unavailable = self._infer(items)
        for item in items:
            if item.prediction is not None and item.failure is None:
                item.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
                self._guard(item, "verdict", partial(self._build_verdict, item))

        done_until, cut = self._produce_and_confirm(items)
        self._store_predictions(items)
        self._commit(done_until)
        if unavailable:
            self._pause(cut)

    def _guard(self, item: Item, step: str, work: Callable[[], None]) -> None:
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
                step, record.topic, record.partition, record.offset, printable(repr(exc)),
                "".join(traceback.format_tb(exc.__traceback__)),
            )  # fmt: skip
            item.fail(InternalError(step, exc))

    def _parse_and_fetch(self, items: list[Item]) -> None:
        fetches: list[tuple[Item, Future[bytes], float]] = []
        for item in items:
            self._guard(item, "parse", partial(self._parse, item, fetches))
        for item, future, t0 in fetches:
            self._guard(item, "fetch", partial(self._fetched, item, future))
            item.timings_ms["fetch"] = round((time.perf_counter() - t0) * 1000, 3)
        for item in items:
            if item.image is not None and item.failure is None:
                item.sha256 = hashlib.sha256(item.image).hexdigest()

    def _parse(self, item: Item, fetches: list[tuple[Item, Future[bytes], float]]) -> None:
        event = item.event = parse_event(item.record.value)
        if event.image_bytes is not None:
            item.image = event.image_bytes
        elif event.image_url is not None:
            future = self._fetch_pool.submit(self._fetch, event.image_url)
            fetches.append((item, future, time.perf_counter()))

    def _fetched(self, item: Item, future: Future[bytes]) -> None:
        try:
            item.image = future.result(timeout=self._fetch_wait_s)
        except FutureTimeout as exc:
            future.cancel()
            raise FetchError(
                f"fetching took longer than {self._fetch_wait_s:.0f} s", "fetch_timeout"
            ) from exc

    def _lookup_cache(self, items: list[Item]) -> None:
        wanted = [i for i in items if i.needs_inference]
        if not self.cache.enabled:
            return
        if not wanted or self.model_version is None:
            self.metrics.cache_requests.labels(result="miss").inc(len(wanted))
            return
        t0 = time.perf_counter()
        keys = {id(i): cache_key(self.model_version, i.sha256) for i in wanted}
        for item in wanted:  # checked predictions kept in this process first
            item.prediction = self._recent.get(keys[id(item)])
            item.cache_hit = item.prediction is not None
        remote = [i for i in wanted if not i.cache_hit]
        try:
            found = self.cache.get_many([keys[id(i)] for i in remote]) if remote else []
        except Exception:  # the cache fails open, whatever it raises
            log.exception("the cache failed unexpectedly: every lookup is a miss")
            self.metrics.cache_errors.labels(operation="get").inc()
            found = [None] * len(remote)
        for item, entry in zip(remote, found, strict=True):
            if entry is None:
                continue
            try:
                prediction = contract.checked_prediction(entry)
                if prediction["model_version"] != self.model_version:
                    raise BadEventError("cache entry of another model version", "invalid")
            except BadEventError:
                # A corrupt or forged entry is a miss; the model's answer overwrites it.
                self.metrics.cache_errors.labels(operation="invalid").inc()
                continue
            item.prediction, item.cache_hit = prediction, True
            self._recent.put(keys[id(item)], prediction)
        elapsed = round((time.perf_counter() - t0) * 1000, 3)
        hits = sum(1 for i in wanted if i.cache_hit)
        for item in wanted:
            item.timings_ms["cache"] = elapsed
        self.metrics.cache_requests.labels(result="hit").inc(hits)
        self.metrics.cache_requests.labels(result="miss").inc(len(wanted) - hits)

    def _infer(self, items: list[Item]) -> bool:
        """Predict every miss (each distinct image once); True when TorchServe is unavailable."""
        misses = [i for i in items if i.needs_inference]
        futures: dict[str, Future[dict[str, Any]]] = {}
        for item in misses:
            if item.sha256 not in futures and item.image is not None:
                submit = partial(self._submit, futures, item.sha256, item.image)
                self._guard(item, "inference", submit)
        self.metrics.inference_requests.inc(len(futures))
        self.metrics.in_flight.set(len(futures))
        results: dict[str, Prediction | BadEventError] = {}
        unavailable = False
        for sha, future in futures.items():
            try:
                results[sha] = contract.checked_prediction(future.result())
            except BadEventError as exc:
                results[sha] = exc
            except InferenceUnavailableError as exc:
                if not unavailable:
                    log.warning("TorchServe unavailable: %s", exc)
                unavailable = True
            except Exception as exc:  # a bug in the client: this image's dead letter
                log.exception("unexpected error from the inference client")
                results[sha] = InternalError("inference", exc)
            finally:
                self.metrics.in_flight.dec()
        for item in misses:
            result = results.get(item.sha256)
            if isinstance(result, BadEventError):
                item.fail(result)
                if isinstance(result, BadImageError):
                    self._learn_model_version(result.model_version)
            elif result is not None:
                # Cached and used as coarse as the floor: no exact GPS kept for the cache's TTL.
                result = private_prediction(result, self.policy.min_precision_km)
                item.prediction = result
                item.timings_ms["model"] = result.get("timings_ms", {})
                self._learn_model_version(result["model_version"])
        return unavailable

    def _submit(self, futures: dict[str, Future[dict[str, Any]]], sha: str, image: bytes) -> None:
        futures[sha] = self.inference.submit(image)

    def _build_verdict(self, item: Item) -> None:
        if item.event is None or item.prediction is None:
            raise ServiceError("verdict without an event and a prediction")  # a bug, not input
        item.verdict = build_verdict(
            item.event, item.prediction, self.policy, self.places,
            cache_hit=item.cache_hit, image_sha256=item.sha256, timings_ms=item.timings_ms,
        )  # fmt: skip
        item.key = item.event.id.encode()
        item.payload = json.dumps(item.verdict, separators=(",", ":")).encode()

    # -- output --------------------------------------------------------------------------------
    def _produce_and_confirm(
        self, items: list[Item]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Send each answered item's verdict or dead letter and wait for Kafka's acks.

        Returns the next offset to commit per partition, and where each partition is cut: its
        first record still owed an inference (TorchServe unavailable); nothing after it is sent.
        Raises ServiceError when Kafka does not acknowledge: then nothing is committed."""
        done_until: dict[TopicPartition, int] = {}
        cut: dict[TopicPartition, int] = {}
        sends: list[tuple[Item, _Output, SendFuture]] = []
        for item in items:
            if item.tp in cut:
                continue
            if item.failure is None and item.payload is None:
                cut[item.tp] = item.record.offset  # its inference is still owed
                continue
            output = self._output(item)
            sends.append((item, output, self._send(output)))
            done_until[item.tp] = item.record.offset + 1
        self._flush()
        refused: list[tuple[Item, _Output]] = []
        for item, output, future in sends:
            if self._acknowledged(output, future):
                self._count(item, output)
            else:
                refused.append((item, output))
        # The broker refused a copy as too large (its limit is below ours): send a reference.
        retries = [(item, self._reference(item, output)) for item, output in refused]
        futures = [(item, output, self._send(output)) for item, output in retries]
        if futures:
            self._flush()
        for item, output, future in futures:
            if not self._acknowledged(output, future):
                raise ServiceError(f"Kafka refused even the reference of a too-large {output.kind}")
            self._count(item, output)
        return done_until, cut

    def _output(self, item: Item) -> _Output:
        """The verdict, the dead letter, or (when a copy would not fit) a reference."""
        if item.failure is None and item.payload is not None:
            output = _Output(
                self.settings.kafka.verdict_topic, item.key, item.payload, [], "verdict"
            )
        else:
            failure = item.failure or InternalError("output", ServiceError("no answer"))
            if self.settings.dead_letter_payload == "reference":
                letter = without_content(item.record, failure, item.event_id, item.event)
            else:
                letter = dead_letter(item.record, failure, item.event_id)
            output = self._letter_output(letter)
            record = item.record
            log.info(
                "dead letter %s/%d@%d: %s: %s",
                record.topic, record.partition, record.offset, failure.reason,
                printable(str(failure), 300),
            )  # fmt: skip
        if record_size(output.key, output.value, output.headers) > self._max_bytes:
            return self._reference(item, output)
        return output

    def _letter_output(self, letter: DeadLetter) -> _Output:
        return _Output(
            self.settings.kafka.dead_letter_topic,
            letter.key,
            letter.value,
            letter.headers,
            "dead_letter",
            letter.reason,
        )

    def _reference(self, item: Item, output: _Output) -> _Output:
        original = output.reason or (item.failure.reason if item.failure else output.kind)
        log.warning(
            "%s/%d@%d: its %s would exceed the broker's %d-byte message limit: "
            "dead-lettered as a reference",
            item.record.topic, item.record.partition, item.record.offset, output.kind,
            self._max_bytes,
        )  # fmt: skip
        return self._letter_output(reference(item.record, original, item.event_id))

    def _send(self, output: _Output) -> SendFuture:
        try:
            return self.producer.send(
                output.topic, key=output.key, value=output.value, headers=output.headers or None
            )
        except KafkaError as exc:
            raise ServiceError(f"Kafka did not take a {output.kind}: {exc}") from exc

    def _flush(self) -> None:
        try:
            self.producer.flush(timeout=self.settings.shutdown_timeout_s)
        except KafkaError as exc:
            raise ServiceError(f"Kafka did not acknowledge in time: {exc}") from exc

    @staticmethod
    def _acknowledged(output: _Output, future: SendFuture) -> bool:
        """True when acknowledged; False when refused as too large; raises otherwise."""
        try:
            future.get(timeout=0)
        except TOO_LARGE_ERRORS:
            return False
        except KafkaError as exc:
            # Not acknowledged: do not commit; crash and let the group replay the batch.
            raise ServiceError(f"Kafka did not acknowledge a {output.kind}: {exc}") from exc
        return True

    def _count(self, item: Item, output: _Output) -> None:
        if output.kind == "dead_letter":
            self.metrics.dead_letters.labels(reason=output.reason or "unknown").inc()
            return
        self.metrics.verdicts.labels(cache="hit" if item.cache_hit else "miss").inc()
        self.metrics.end_to_end.observe(max(0.0, time.time() - self._event_time(item)))
        verdict = item.verdict
        if verdict is None:
            return
        scene = verdict["scene"].get("s3")
        if scene is not None:
            self.metrics.scenes.labels(scene=scene["label"]).inc()
        for check in verdict["consistency"]:
            if check["location_mismatch"]:
                self.metrics.mismatches.labels(claim_source=check["claim_source"]).inc()

    @staticmethod
    def _event_time(item: Item) -> float:
        if item.event is not None and item.event.time is not None:
            return item.event.time.timestamp()
        return float(item.record.timestamp) / 1000.0

    def _store_predictions(self, items: list[Item]) -> None:
        fresh = {
            cache_key(i.prediction["model_version"], i.sha256): i.prediction
            for i in items
            if i.prediction is not None and not i.cache_hit and i.failure is None
        }
        for key, prediction in fresh.items():
            self._recent.put(key, prediction)
        try:
            self.cache.set_many(dict(fresh))
        except Exception:  # the cache fails open, whatever it raises
            log.exception("the cache failed unexpectedly while storing")
            self.metrics.cache_errors.labels(operation="set").inc()

    def _commit(self, done_until: dict[TopicPartition, int]) -> None:
        """Commit without waiting for the answer: Kafka already acknowledged what these
        offsets cover, so a commit that fails only means those records come again (at least
        once). Waiting for it cost a round trip per batch (half the cached path's time)."""
        if not done_until:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in done_until.items()}
        self._pending.update(offsets)
        self.consumer.commit_async(offsets, callback=self._committed)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata], result: Any) -> None:
        if isinstance(result, Exception):
            log.warning("async commit failed (records will be replayed): %s", result)

    def _final_commit(self) -> None:
        """On shutdown: wait for the last offsets to be committed."""
        if not self._pending:
            return
        try:
            self.consumer.commit(dict(self._pending))
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced meanwhile: these records will be redelivered (at least once).
            log.warning("final commit failed, records will be replayed: %s", exc)

    # -- TorchServe unavailable ----------------------------------------------------------------
    def _pause(self, cut: dict[TopicPartition, int]) -> None:
        for tp, offset in cut.items():
            self.consumer.seek(tp, offset)
        assignment = self.consumer.assignment()
        self.consumer.pause(*assignment)
        self._paused = True
        delay = self._backoff.next()
        self._resume_at = time.monotonic() + delay
        self.metrics.inference_unavailable.inc()
        self.metrics.paused.set(len(assignment))
        log.warning("paused %d partitions; retrying TorchServe in %.1f s", len(assignment), delay)

    def _maybe_resume(self) -> None:
        if time.monotonic() < self._resume_at:
            return
        if not self.inference.healthy():
            self._resume_at = time.monotonic() + self._backoff.next()
            return
        self.consumer.resume(*self.consumer.paused())
        self._paused = False
        self._backoff.reset()
        self.metrics.paused.set(0)
        log.info("TorchServe is back: partitions resumed")

    # -- bookkeeping ---------------------------------------------------------------------------
    def _learn_model_version(self, version: str | None) -> None:
        if version and version != self.model_version:
            if self.model_version is not None:
                log.info("model version changed: %s -> %s", self.model_version, version)
            self.model_version = version
            self.metrics.model.info({"version": version})

    def _update_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            position = self.consumer.position(tp, timeout_ms=0) if highwater is not None else None
            if highwater is not None and position is not None:
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, highwater - position)
                )


def run_service(
    settings: ServiceSettings,
    on_ready: Callable[[int], None] | None = None,
    max_idle_s: float | None = None,
) -> None:
    """Start (bounded), serve health endpoints, consume until stopped: `geoverdict consume`."""
    stop = threading.Event()
    shutdown = GracefulShutdown(settings.shutdown_timeout_s, on_stop=stop.set)
    if threading.current_thread() is threading.main_thread():
        shutdown.install()
    try:
        service = VerdictService.from_settings(settings, stop=stop)
        if service is None:
            log.info("stopped during start-up")
            return
        port = service.start_health_server()
        if on_ready is not None:
            on_ready(port)
        log.info(
            "consuming %s as group %s; metrics on :%d",
            settings.kafka.input_topic, settings.group_id, port,
        )  # fmt: skip
        service.run(max_idle_s=max_idle_s)
    finally:
        shutdown.cancel()
