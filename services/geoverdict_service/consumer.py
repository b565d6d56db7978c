"""The verdict service's loop: Kafka in, Redis cache, TorchServe, verdicts and dead letters out.

At least once: a batch's offsets are committed only after Kafka acknowledged every verdict and
dead-letter record of it, so a crash replays (never loses) the batch. Processing is synchronous
per poll, so a rebalance (which kafka-python runs inside poll) never finds work in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.producer.future import FutureRecordMetadata

from geoverdict_service import contract
from geoverdict_service.cache import PredictionCache, cache_key
from geoverdict_service.events import ImageEvent, parse_event
from geoverdict_service.exceptions import (
    BadEventError,
    BadImageError,
    InferenceUnavailableError,
    ServiceError,
)
from geoverdict_service.fetch import FetchPolicy, fetch_image
from geoverdict_service.geo import PlaceNames
from geoverdict_service.inference import InferenceClient, Prediction, TokenSource
from geoverdict_service.metrics import HealthServer, Metrics, loop_alive
from geoverdict_service.settings import Settings
from geoverdict_service.verdicts import VerdictPolicy, build_verdict

log = logging.getLogger(__name__)


@dataclass
class _Item:
    """One polled record on its way to a verdict or a dead letter."""

    tp: TopicPartition
    record: ConsumerRecord
    event: ImageEvent | None = None
    image: bytes | None = None
    sha256: str = ""
    failure: BadEventError | None = None
    prediction: Prediction | None = None
    cache_hit: bool = False
    verdict: dict[str, Any] | None = None
    timings_ms: dict[str, Any] = field(default_factory=dict)


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
    """One consumer process of the `geoverdict` group."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        places: PlaceNames | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.places = places if places is not None else PlaceNames()
        self.policy = VerdictPolicy(
            top_k=settings.top_k,
            mismatch_threshold_km=settings.mismatch_threshold_km,
            mismatch_max_mass=settings.mismatch_max_mass,
            min_precision_km=settings.min_precision_km,
        )
        self.fetch_policy = FetchPolicy(
            allowed_hosts=settings.fetch_allowed_hosts,
            allow_private=settings.fetch_allow_private,
            max_bytes=settings.fetch_max_bytes,
            timeout_s=settings.fetch_timeout_s,
            retries=settings.fetch_retries,
        )
        token = settings.torchserve_token.get_secret_value() if settings.torchserve_token else None
        self.client = InferenceClient(
            settings.torchserve_url,
            settings.model_name,
            TokenSource(token, settings.torchserve_key_file),
            concurrency=settings.inference_concurrency,
            timeout_s=settings.inference_timeout_s,
            retries=settings.inference_retries,
            observe=self.metrics.inference_latency.observe,
        )
        self.cache = PredictionCache(
            settings.redis_url,
            settings.cache_ttl_s,
            timeout_s=settings.redis_timeout_s,
            on_error=lambda op: self.metrics.cache_errors.labels(operation=op).inc(),
        )
        kafka_options = settings.kafka_client_options()
        client_id = f"geoverdict-{socket.gethostname()}-{os.getpid()}"
        self.consumer = KafkaConsumer(
            **kafka_options,
            client_id=client_id,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_poll_records,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
        )
        self.producer = KafkaProducer(
            **kafka_options, client_id=client_id, acks="all", linger_ms=5, retries=5
        )
        self._fetch_pool = ThreadPoolExecutor(8, thread_name_prefix="fetch")
        self._stop = threading.Event()
        self._paused = False
        self._resume_at = 0.0
        self._backoff_s = settings.unavailable_backoff_s
        self.model_version: str | None = None
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}  # last offsets committed
        self._health: HealthServer | None = None
        self.health_port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start_health_server(self) -> int:
        """Serve /metrics, /healthz, /readyz; returns the port (0 in settings: a free one)."""
        self._health = HealthServer(
            self.metrics,
            self.settings.metrics_host,
            self.settings.metrics_port,
            alive=loop_alive(
                self.metrics, stall_after_s=max(60.0, self.settings.inference_timeout_s * 4)
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
            "torchserve": self.client.healthy(),
            "redis": self.cache.available() if self.cache.enabled else True,
        }
        return all(checks.values()), checks

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and close (safe from a signal handler)."""
        self._stop.set()

    def run(self, max_idle_s: float | None = None) -> None:
        """Consume until stop() (or `max_idle_s` without messages, for demos and benchmarks)."""
        self.places.warm_up()
        self._learn_model_version(self.client.model_version())
        if not self._wait_for_topic():
            self.close()
            return
        self.consumer.subscribe([self.settings.input_topic], listener=_Rebalance(self))
        idle_since = time.monotonic()
        try:
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
        """Wait until Kafka knows the input topic. A member that joins the group before its
        client has the topic's metadata can be assigned nothing until its next metadata refresh
        (up to metadata.max.age, 5 minutes; seen with kafka-python 3.0). False when stopped
        while waiting."""
        topic = self.settings.input_topic
        warned_at = time.monotonic()
        while not self._stop.is_set():
            self.metrics.last_loop.set_to_current_time()
            if self.consumer.partitions_for_topic(topic):
                return True
            if time.monotonic() - warned_at > 30:
                log.warning("input topic %s does not exist yet; waiting for it", topic)
                warned_at = time.monotonic()
            self._stop.wait(0.5)
        return False

    def close(self) -> None:
        """Flush, close every client; committed offsets stay where the last batch put them."""
        try:
            self.producer.flush(timeout=self.settings.shutdown_timeout_s)
            self._final_commit()
        finally:
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=self.settings.shutdown_timeout_s)
            self.client.close()
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
        items = [_Item(tp, record) for tp, records in batch.items() for record in records]
        self.metrics.events.inc(len(items))
        self.metrics.batch_size.observe(len(items))

        self._parse_and_fetch(items)
        self._lookup_cache(items)
        unavailable = self._infer(items)

        done_until: dict[TopicPartition, int] = {}  # next offset to commit per partition
        cut: dict[TopicPartition, int] = {}  # first offset to retry per partition
        sends: list[tuple[_Item, FutureRecordMetadata, str]] = []
        for item in items:
            tp = item.tp
            if tp in cut:
                continue
            if item.failure is not None:
                sends.append((item, self._dead_letter(item), "dead_letter"))
            elif item.prediction is not None:
                item.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
                sends.append((item, self._send_verdict(item), "verdict"))
            else:  # its inference is still owed: TorchServe is unavailable
                cut[tp] = item.record.offset
                continue
            done_until[tp] = item.record.offset + 1

        self.producer.flush(timeout=self.settings.shutdown_timeout_s)
        for item, future, kind in sends:
            try:
                future.get(timeout=0)
            except KafkaError as exc:
                # Not acknowledged: do not commit; crash and let the group replay the batch.
                raise ServiceError(f"Kafka did not acknowledge a {kind}: {exc}") from exc
            self._count(item, kind)
        self._store_predictions(items)
        self._commit(done_until)
        if unavailable:
            self._pause(cut)

    def _parse_and_fetch(self, items: list[_Item]) -> None:
        fetches: list[tuple[_Item, Future[bytes], float]] = []
        for item in items:
            try:
                item.event = parse_event(item.record.value)
            except BadEventError as exc:
                item.failure = exc
                continue
            if item.event.image_bytes is not None:
                item.image = item.event.image_bytes
            else:
                url = str(item.event.image_url)
                fetches.append(
                    (
                        item,
                        self._fetch_pool.submit(fetch_image, url, self.fetch_policy),
                        time.perf_counter(),
                    )
                )
        for item, future, t0 in fetches:
            try:
                item.image = future.result()
            except BadEventError as exc:
                item.failure = exc
            item.timings_ms["fetch"] = round((time.perf_counter() - t0) * 1000, 3)
        for item in items:
            if item.image is not None:
                item.sha256 = hashlib.sha256(item.image).hexdigest()

    def _lookup_cache(self, items: list[_Item]) -> None:
        wanted = [i for i in items if i.image is not None and i.failure is None]
        if not wanted or not self.cache.enabled or self.model_version is None:
            if self.cache.enabled:
                self.metrics.cache_requests.labels(result="miss").inc(len(wanted))
            return
        t0 = time.perf_counter()
        found = self.cache.get_many([cache_key(self.model_version, i.sha256) for i in wanted])
        elapsed = round((time.perf_counter() - t0) * 1000, 3)
        for item, prediction in zip(wanted, found, strict=True):
            item.timings_ms["cache"] = elapsed
            if prediction is not None:
                item.prediction, item.cache_hit = prediction, True
        hits = sum(1 for i in wanted if i.cache_hit)
        self.metrics.cache_requests.labels(result="hit").inc(hits)
        self.metrics.cache_requests.labels(result="miss").inc(len(wanted) - hits)

    def _infer(self, items: list[_Item]) -> bool:
        """Predict every miss (each distinct image once); True when TorchServe is unavailable."""
        misses = [
            i for i in items if i.image is not None and i.failure is None and i.prediction is None
        ]
        futures: dict[str, Future[Prediction]] = {}
        for item in misses:
            if item.sha256 not in futures and item.image is not None:
                futures[item.sha256] = self.client.submit(item.image)
        self.metrics.inference_requests.inc(len(futures))
        self.metrics.in_flight.set(len(futures))
        results: dict[str, Prediction | BadEventError] = {}
        unavailable = False
        for sha, future in futures.items():
            try:
                results[sha] = checked_prediction(future.result())
            except BadEventError as exc:
                results[sha] = exc
            except InferenceUnavailableError as exc:
                if not unavailable:
                    log.warning("TorchServe unavailable: %s", exc)
                unavailable = True
            finally:
                self.metrics.in_flight.dec()
        for item in misses:
            result = results.get(item.sha256)
            if isinstance(result, BadEventError):
                item.failure = result
                if isinstance(result, BadImageError):
                    self._learn_model_version(result.model_version)
            elif result is not None:
                item.prediction = result
                item.timings_ms["model"] = result.get("timings_ms", {})
                self._learn_model_version(result.get("model_version"))
        return unavailable

    # -- output --------------------------------------------------------------------------------
    def _send_verdict(self, item: _Item) -> FutureRecordMetadata:
        if item.event is None or item.prediction is None:
            raise ServiceError("verdict without an event and a prediction")  # a bug, not input
        item.verdict = build_verdict(
            item.event, item.prediction, self.policy, self.places,
            cache_hit=item.cache_hit, image_sha256=item.sha256, timings_ms=item.timings_ms,
        )  # fmt: skip
        value = json.dumps(item.verdict, separators=(",", ":")).encode()
        return self.producer.send(
            self.settings.verdict_topic, key=item.event.id.encode(), value=value
        )

    def _dead_letter(self, item: _Item) -> FutureRecordMetadata:
        failure = item.failure
        reason = failure.reason if failure is not None else "unknown"
        record = item.record
        headers = [
            ("reason", reason.encode()),
            ("message", str(failure)[:1000].encode()),
            ("original_topic", record.topic.encode()),
            ("original_partition", str(record.partition).encode()),
            ("original_offset", str(record.offset).encode()),
        ]
        if item.event is not None:
            headers.append(("event_id", item.event.id.encode()))
        log.info(
            "dead letter %s/%d@%d: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            failure,
        )
        return self.producer.send(
            self.settings.dead_letter_topic, key=record.key, value=record.value, headers=headers
        )

    def _count(self, item: _Item, kind: str) -> None:
        if kind == "dead_letter":
            reason = item.failure.reason if item.failure is not None else "unknown"
            self.metrics.dead_letters.labels(reason=reason).inc()
            return
        self.metrics.verdicts.labels(cache="hit" if item.cache_hit else "miss").inc()
        self.metrics.end_to_end.observe(max(0.0, time.time() - self._event_time(item)))
        verdict = item.verdict or {}
        scene = verdict.get("scene", {}).get("s3", {}).get("label")
        if scene:
            self.metrics.scenes.labels(scene=scene).inc()
        for check in verdict.get("consistency", []):
            if check["location_mismatch"]:
                self.metrics.mismatches.labels(claim_source=check["claim_source"]).inc()

    @staticmethod
    def _event_time(item: _Item) -> float:
        if item.event is not None and item.event.time is not None:
            return item.event.time.timestamp()
        return float(item.record.timestamp) / 1000.0

    def _store_predictions(self, items: list[_Item]) -> None:
        fresh = {
            cache_key(str(i.prediction["model_version"]), i.sha256): i.prediction
            for i in items
            if i.prediction is not None and not i.cache_hit
        }
        self.cache.set_many(fresh)

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
        self._resume_at = time.monotonic() + self._backoff_s
        self.metrics.inference_unavailable.inc()
        self.metrics.paused.set(len(assignment))
        log.warning(
            "paused %d partitions; retrying TorchServe in %.1f s", len(assignment), self._backoff_s
        )
        self._backoff_s = min(self._backoff_s * 2, self.settings.unavailable_max_backoff_s)

    def _maybe_resume(self) -> None:
        if time.monotonic() < self._resume_at:
            return
        if not self.client.healthy():
            self._resume_at = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, self.settings.unavailable_max_backoff_s)
            return
        self.consumer.resume(*self.consumer.paused())
        self._paused = False
        self._backoff_s = self.settings.unavailable_backoff_s
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


def checked_prediction(prediction: Prediction) -> Prediction:
    """The model's reply, if it keeps the contract; a malformed one is this event's dead letter
    (the loop must never crash on what a model server sends)."""
    problems = contract.check(contract.PREDICTION, prediction)
    if problems:
        raise BadEventError(
            "model reply breaks prediction.schema.json: " + "; ".join(problems[:3]),
            "invalid_prediction",
        )
    return prediction


def run_service(
    settings: Settings,
    on_ready: Callable[[int], None] | None = None,
    max_idle_s: float | None = None,
) -> None:
    """Build, serve health endpoints, consume until stopped; the body of `geoverdict consume`."""
    import signal  # noqa: PLC0415

    service = VerdictService(settings)
    port = service.start_health_server()
    if on_ready is not None:
        on_ready(port)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.stop())
    log.info(
        "consuming %s as group %s; metrics on :%d", settings.input_topic, settings.group_id, port
    )
    service.run(max_idle_s=max_idle_s)
