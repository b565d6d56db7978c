"""Fixtures for the verdict service's integration tests: topics, a served model, a consumer."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from PIL import Image

from geoverdict_service.consumer import VerdictService
from geoverdict_service.events import make_event
from geoverdict_service.metrics import Metrics
from geoverdict_service.settings import ServiceSettings, load_service_settings
from geoverdict_stack import acls, process
from geoverdict_stack.kafka import create_topics
from geoverdict_stack.ports import free_ports
from geoverdict_stack.redis import RedisServer
from geoverdict_stack.stack import Stack
from tests.stack_fixtures import Served, torchserve_served


def jpeg(index: int, size: int = 64) -> bytes:
    """A small, distinct, valid JPEG."""
    image = Image.new(
        "RGB", (size, size), ((index * 37) % 256, (index * 91) % 256, (index * 13) % 256)
    )
    image.putpixel((index % size, (index // size) % size), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def topics(stack: Stack) -> dict[str, str]:
    """Fresh input, verdict and dead-letter topics (4 partitions each) and a fresh group."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "input_topic": f"images-{tag}",
        "verdict_topic": f"verdicts-{tag}",
        "dead_letter_topic": f"dead-{tag}",
        "group_id": f"geoverdict-{tag}",
    }
    create_topics(
        stack.kafka_bootstrap,
        {names[k]: 4 for k in ("input_topic", "verdict_topic", "dead_letter_topic")},
    )
    # The consumer's and a client's permissions on them, for the SASL listeners (ACLs).
    acls.apply(
        stack.kafka_bootstrap,
        acls.grants(
            names["input_topic"],
            names["verdict_topic"],
            names["dead_letter_topic"],
            group=names["group_id"],
            transactional_prefix=transactional_prefix(names),
        ),
    )
    return names


def transactional_prefix(topics: dict[str, str]) -> str:
    """The transactional-id prefix granted to the consumer's user for these topics alone (the
    stack grants `geoverdict`, the default, for its own topics)."""
    return f"txn-{topics['group_id']}"


def service_settings(
    stack: Stack, model: Served | str, topics: dict[str, str], **overrides: Any
) -> ServiceSettings:
    """Settings pointing a consumer at the session stack and a served model (a name: on the
    stack's TorchServe). `overrides` are ServiceSettings fields; `kafka=` and `server=` dicts
    add to the nested settings (`server`: the model server's)."""
    served = model if isinstance(model, Served) else torchserve_served(stack, model)
    kafka = {
        "bootstrap_servers": stack.kafka_bootstrap,
        **{k: v for k, v in topics.items() if k != "group_id"},
        **overrides.pop("kafka", {}),
    }
    server = served.settings(**overrides.pop("server", {}))
    values: dict[str, Any] = {
        "group_id": topics["group_id"],
        "redis_url": stack.redis_url,
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
        "max_poll_records": 32,
        "unavailable_backoff_s": 0.5,
        "unavailable_max_backoff_s": 2.0,
        **overrides,
    }
    return load_service_settings(kafka=kafka, **server, **values)


@contextmanager
def running(settings: ServiceSettings, metrics: Metrics | None = None) -> Iterator[VerdictService]:
    """A consumer on a background thread; stopped (drained, committed) on exit."""
    service = VerdictService.from_settings(settings, metrics=metrics)
    assert service is not None
    service.start_health_server()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    thread = threading.Thread(target=target, name="consumer", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(timeout=60)
    if errors:
        raise errors[0]


def publish_events(stack: Stack, topic: str, events: list[dict[str, Any]] | list[bytes]) -> None:
    """Send events (dicts as JSON, bytes as they are) and wait for the acknowledgements."""
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for event in events:
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        producer.send(topic, value=value)
    producer.flush()
    producer.close()


def collect(stack: Stack, topic: str, expected: int, timeout_s: float = 90.0) -> list[Any]:
    """Read a topic from the start until `expected` records arrived (or the timeout)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # what subscribers must read
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for record in consumer:  # ends after 1 s without a record
                records.append(record)
                if len(records) >= expected:
                    break
    finally:
        consumer.close()
    return records


def events_for(
    images: list[bytes], claim: tuple[float, float] | None = None
) -> list[dict[str, Any]]:
    """One inline image event per image."""
    return [make_event(f"post-{i}", image_bytes=img, claim=claim) for i, img in enumerate(images)]


def metric_value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample of the service's registry (0 when absent)."""
    value = metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


def metric_total(metrics: Metrics, name: str) -> float:
    """One metric's samples named `name`, summed over all their labels (0 when absent)."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    )


def service_counts(metrics: Metrics) -> str:
    """What a consumer did, for an assertion's message: which side of a stall it was on."""
    names = {
        "consumed": "geoverdict_events_consumed_total",
        "verdicts": "geoverdict_verdicts_produced_total",
        "dead letters": "geoverdict_dead_letters_total",
        "inference requests": "geoverdict_inference_requests_total",
        "unavailable": "geoverdict_inference_unavailable_total",
        "assigned partitions": "geoverdict_assigned_partitions",
    }
    return ", ".join(f"{label}: {metric_total(metrics, name):.0f}" for label, name in names.items())


# -- a redis-server of the test module's own (the cache's and the index's tests) --------------
# A redis-server of the test's own: left out by `make test-unit` (marker `server`), skipped
# where it is not installed.
needs_redis = pytest.mark.server


@contextmanager
def redis_server(run_dir: Path, port: int) -> Iterator[RedisServer]:
    """A redis-server of this test on 127.0.0.1:`port`, with the stack's users."""
    server = RedisServer(run_dir, port)
    record, _ = server.start()
    try:
        yield server
    finally:
        process.stop(record)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with redis_server(tmp_path_factory.mktemp("redis"), free_ports(1)[0]) as running:
        yield running
