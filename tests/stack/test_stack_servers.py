"""The real servers of the session stack answer real clients (integration)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from geoverdict_stack.kafka import create_topics
from geoverdict_stack.stack import Stack
from tests.stack_fixtures import build_archive, register_model

pytestmark = pytest.mark.integration

ASSETS = Path(__file__).parent / "assets"


def _consumer(stack: Stack, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )


def test_kafka_group_resumes_from_committed_offset(stack: Stack) -> None:
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topics(stack.kafka_bootstrap, {topic: 1})
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, value=f"event-{i}".encode())
    producer.flush()
    producer.close()

    first = _consumer(stack, group)
    first.subscribe([topic])
    seen = []
    for message in first:
        seen.append(message.value.decode())
        if len(seen) == 4:
            break
    first.commit()  # offsets of the four consumed messages
    first.close()
    assert seen == [f"event-{i}" for i in range(4)]

    second = _consumer(stack, group)
    second.subscribe([topic])
    rest = [m.value.decode() for m in second]
    committed = second.committed(TopicPartition(topic, 0))
    second.close()
    assert rest == [f"event-{i}" for i in range(4, 10)]
    assert committed == 4


def test_redis_set_get(stack: Stack) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    client.set("geoverdict:test", b"verdict", ex=60)
    assert client.get("geoverdict:test") == b"verdict"
    admin = redis.Redis.from_url(stack.redis.url_for("admin"))  # the consumer may not ask TTL
    assert 0 < admin.ttl("geoverdict:test") <= 60
    client.close()
    admin.close()


def _predict(stack: Stack, model: str, body: bytes, token: str | None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{stack.torchserve.url('inference')}/predictions/{model}", data=body, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_torchserve_needs_the_inference_token(stack: Stack) -> None:
    archive = build_archive(ASSETS / "echo_handler.py", "echo", stack.config.model_store)
    model = register_model(stack, archive)
    key = stack.torchserve_keys()["inference"]

    status, body = _predict(stack, model, b"12345", key)
    assert status == 200
    assert json.loads(body) == {"bytes": 5, "batch": 1}

    status, _ = _predict(stack, model, b"12345", None)
    assert 400 <= status < 500
    status, _ = _predict(stack, model, b"12345", "not-the-key")
    assert 400 <= status < 500


def test_torchserve_exposes_prometheus_metrics(stack: Stack) -> None:
    with urllib.request.urlopen(stack.torchserve.url("metrics") + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert "# TYPE" in text


def _triton(stack: Stack, path: str, key: str | None, body: bytes | None = None) -> int:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    request = urllib.request.Request(
        stack.triton.url() + path, data=body, headers=headers, method="POST" if body else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_triton_refuses_inference_and_management_without_the_secret(stack: Stack) -> None:
    assert _triton(stack, "/v2/health/ready", None) == 200  # probes need no secret
    secret = stack.triton.secret()
    for path, body in [
        ("/v2/models/any/infer", b"{}"),
        ("/v2/repository/index", b"{}"),
        ("/v2/models/any/config", None),
        ("/v2/models/stats", None),
    ]:
        assert _triton(stack, path, None, body) == 403, path
        assert _triton(stack, path, "not-the-secret", body) == 403, path
    assert _triton(stack, "/v2/repository/index", secret, b"{}") == 200


def test_triton_exposes_prometheus_metrics(stack: Stack) -> None:
    with urllib.request.urlopen(stack.triton.url("metrics") + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert "nv_inference_request_success" in text or "# TYPE" in text
