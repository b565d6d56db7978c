"""The verdict service's loop: Kafka in, Redis cache, a model server, verdicts and dead letters out.

At least once: a batch's offsets are committed only after Kafka acknowledged every verdict and
dead-letter record of it, so a crash replays (never loses) the batch. Processing is synchronous
per poll, so a rebalance (which kafka-python runs inside poll) never finds work in flight.

No poison pill: every step that touches one record runs under a guard, and whatever it raises
makes that record a dead letter (reason `internal` where nobody foresaw it), never a crash.
Only what is not the record's fault stops the loop: Kafka not acknowledging (nothing is
committed, the batch comes again) or the model server unavailable (the partitions pause).

The stages of a batch live in `pipeline/`; this module builds them from the service's parts and
runs them, in `process()`, in the order a record meets them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from geoverdict_service.backoff import Backoff
from geoverdict_service.cache import PredictionCache
from geoverdict_service.exceptions import ServiceError
from geoverdict_service.fetch import fetch_image
from geoverdict_service.geo import PlaceNames
from geoverdict_service.kafka_clients import (
    check_cluster,
    make_verdict_consumer,
    make_verdict_producer,
    make_verdict_transactional_producer,
)
from geoverdict_service.metrics import HealthServer, Metrics, loop_alive
from geoverdict_service.model_servers import client_for
from geoverdict_service.pipeline.checkpoint import Checkpoint
from geoverdict_service.pipeline.delivery import Delivery
from geoverdict_service.pipeline.intake import Intake, fetch_wait_s
from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.lookup import Lookup
from geoverdict_service.pipeline.parts import (
    Cache,
    Consumer,
    Inference,
    Producer,
    TransactionalProducer,
)
from geoverdict_service.pipeline.pause import Pauser
from geoverdict_service.pipeline.predictions import Predictions
from geoverdict_service.pipeline.provenance import Sightings, sighting_rules
from geoverdict_service.pipeline.transactions import ExactlyOnce
from geoverdict_service.pipeline.verdicts import Verdicts
from geoverdict_service.provenance.credentials import CredentialReader
from geoverdict_service.settings import ServiceSettings
from geoverdict_service.shutdown import GracefulShutdown

log = logging.getLogger(__name__)


class Rebalance(ConsumerRebalanceListener):
    """Logs the group's rebalances and tells the service which partitions it was given."""

    def __init__(self, service: VerdictService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Every batch is committed before the next poll, so nothing is in flight here.
        log.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))
        self.service.on_revoked(revoked)

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
        producer: Producer | None = None,
        transactional: Callable[[str], TransactionalProducer] | None = None,
        inference: Inference,
        cache: Cache,
        metrics: Metrics | None = None,
        places: PlaceNames | None = None,
        fetch: Callable[[str], bytes] | None = None,
        sightings: Sightings | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.inference = inference
        self.cache = cache
        self.metrics = metrics = metrics or Metrics()
        self.places = places
        fetch_policy = settings.fetch.policy()
        # The stages of a batch, in the order process() runs them.
        self.intake = Intake(
            fetch or partial(fetch_image, policy=fetch_policy), fetch_wait_s(fetch_policy), metrics
        )
        self.lookup = Lookup(cache, metrics, settings.cache_local_entries)
        self.predictions = Predictions(inference, metrics, settings.min_precision_km)
        # Fakes' default: no index, a C2PA worker started at the first manifest only.
        self.sightings = sightings or Sightings(
            sighting_rules(settings),
            metrics,
            index=None,
            reader=CredentialReader(eager=False),
            cache=cache,
        )
        self.verdicts = Verdicts(settings.policy(), places, settings.cache_local_entries)
        self.delivery = Delivery(producer, metrics, settings)
        self.checkpoint = Checkpoint(consumer)
        # exactly_once: a transactional producer per input partition (transactions.py)
        self.transactions: ExactlyOnce | None = None
        if settings.processing_guarantee == "exactly_once":
            if transactional is None:
                raise ServiceError("exactly_once needs transactional producers")
            self.transactions = ExactlyOnce(
                transactional,
                consumer,
                self.delivery,
                metrics,
                settings.group_id,
                settings.transactional_id_prefix,
            )
        elif producer is None:
            raise ServiceError("at_least_once needs a producer")
        self.pauser = Pauser(
            consumer,
            inference,
            metrics,
            Backoff(settings.unavailable_backoff_s, settings.unavailable_max_backoff_s),
        )
        self._stop = stop or threading.Event()
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
        """The real parts: Kafka clients (after a bounded start-up check), the model server,
        Redis.
        None when `stop` was set during start-up."""
        stop = stop or threading.Event()
        metrics = metrics or Metrics()
        inference = client_for(settings, observe=metrics.inference_latency.observe)
        kafka = settings.kafka
        topics = {
            "input_topic": kafka.input_topic,
            "verdict_topic": kafka.verdict_topic,
            "dead_letter_topic": kafka.dead_letter_topic,
        }
        api_version = check_cluster(kafka, topics, stop)
        if api_version is None:
            return None
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""
        cache = PredictionCache(
            redis_url or None,  # empty: no cache
            settings.cache_ttl_s,
            timeout_s=settings.redis_timeout_s,
            on_error=lambda op: metrics.cache_errors.labels(operation=op).inc(),
        )
        sightings = Sightings.from_settings(settings, metrics, cache, redis_url or None)
        exactly_once = settings.processing_guarantee == "exactly_once"
        consumer = make_verdict_consumer(settings, api_version)
        transactional = partial(
            make_verdict_transactional_producer, settings, api_version=api_version
        )
        producer = None if exactly_once else make_verdict_producer(settings, api_version)
        return cls(
            settings,
            consumer=consumer,
            producer=producer,
            transactional=transactional if exactly_once else None,
            inference=inference,
            cache=cache,
            metrics=metrics,
            places=places if places is not None else PlaceNames(),
            sightings=sightings,
            stop=stop,
        )

    @property
    def model_version(self) -> str | None:
        """The model version the model server last answered with (None before its first answer)."""
        return self.predictions.model_version

    # -- lifecycle -----------------------------------------------------------------------------
    def start_health_server(self) -> int:
        """Serve /metrics, /healthz, /readyz; returns the port (0 in settings: a free one)."""
        self._health = HealthServer(
            self.metrics,
            self.settings.metrics_host,
            self.settings.metrics_port,
            alive=loop_alive(
                self.metrics, stall_after_s=max(60.0, self.settings.server.timeout_s * 4)
            ),
            ready=self.readiness,
        )
        self._health.start()
        self.health_port = self._health.port
        return self._health.port

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        """/readyz: partitions assigned, the model server answers, Redis answers (when
        configured)."""
        checks = {
            "partitions_assigned": bool(self.consumer.assignment()),
            "model_server": self.inference.healthy(),
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
            self.predictions.learn_model_version(self.inference.model_version())
            if self.transactions is not None:
                self.transactions.check()
            self.subscribe()
            idle_since = time.monotonic()
            while not self._stop.is_set():
                self.metrics.last_loop.set_to_current_time()
                self.pauser.maybe_resume()
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

    def subscribe(self) -> None:
        """Join the group on the input topic (partitions come with the first polls)."""
        self.consumer.subscribe([self.settings.kafka.input_topic], listener=Rebalance(self))

    def close(self) -> None:
        """Flush, commit what was acknowledged, close every client."""
        try:
            if self.producer is not None:
                self.producer.flush(timeout=self.settings.shutdown_timeout_s)
                self.checkpoint.final_commit()
        finally:
            self.consumer.close(autocommit=False)
            if self.producer is not None:
                self.producer.close(timeout=self.settings.shutdown_timeout_s)
            if self.transactions is not None:
                self.transactions.close()
            self.inference.close()
            self.sightings.close()
            self.cache.close()
            self.intake.close()
            if self._health is not None:
                self._health.stop()

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Count the assignment; keep newly assigned partitions paused while the model server
        is down."""
        self.metrics.assigned.set(len(self.consumer.assignment()))
        if self.transactions is not None:  # fences the partitions' former owners
            self.transactions.assigned(assigned)
            self.metrics.transactional_producers.set(self.transactions.producers())
        self.pauser.keep_paused(assigned)

    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """With exactly_once, close the producers of the partitions taken away."""
        if self.transactions is not None:
            self.transactions.revoked(revoked)
            self.metrics.transactional_producers.set(self.transactions.producers())

    # -- one batch -----------------------------------------------------------------------------
    def process(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Turn one poll's records into verdicts and dead letters, then commit them."""
        started = time.perf_counter()
        if self.transactions is not None:  # a partition lost to a new owner is left to it
            batch = {tp: records for tp, records in batch.items() if self.transactions.owned(tp)}
        items = self.intake.read(batch)
        self.sightings.examine(items)
        self.lookup.find(items, self.predictions.model_version)
        self.lookup.reuse(self.sightings.reusable(items), self.predictions.model_version)
        unavailable = self.predictions.predict(items)
        self.sightings.report(items)
        self.verdicts.build(items, started)
        answered, cut = self.checkpoint.cut(items)
        rewound = self._complete(items, answered)
        self.lookup.store(items)
        self.sightings.record(answered)
        if unavailable:
            self.pauser.pause({**cut, **rewound})

    def _complete(self, items: list[Item], answered: list[Item]) -> dict[TopicPartition, int]:
        """Answers out and offsets committed, by the processing guarantee: exactly_once, each
        partition's in one transaction (an aborted one sought back to the batch's start, whose
        offsets are returned); at_least_once, the offsets after Kafka acknowledged (raises, and
        commits nothing, without the acks)."""
        if self.transactions is not None:
            return self.transactions.complete(items, answered)
        self.delivery.count(self.delivery.deliver(answered))
        self.checkpoint.commit(answered)
        return {}

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
            settings.kafka.input_topic,
            settings.group_id,
            port,
        )
        service.run(max_idle_s=max_idle_s)
    finally:
        shutdown.cancel()
