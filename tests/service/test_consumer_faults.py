"""What a public stream and a flaky world throw at the service (integration, real servers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kafka import KafkaProducer, TopicPartition

from geoverdict_service.events import make_event
from geoverdict_service.metrics import Metrics
from geoverdict_stack import process
from geoverdict_stack.ports import free_ports
from geoverdict_stack.redis import RedisServer
from geoverdict_stack.server import Server
from geoverdict_stack.stack import Stack
from geoverdict_stack.torchserve import TorchServeServer
from geoverdict_stack.triton import TritonServer
from tests.service.conftest import (
    collect,
    events_for,
    jpeg,
    metric_value,
    publish_events,
    running,
    service_settings,
)
from tests.stack_fixtures import FIXTURE_HANDLER, Served, add_fixture_model, build_archive

pytestmark = pytest.mark.integration


class _ImageServer(BaseHTTPRequestHandler):
    image = jpeg(999)

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.image)))
        self.end_headers()
        self.wfile.write(self.image)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def image_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _inline(post: str, data: bytes) -> dict:
    return make_event(post, image_bytes=data)


def test_poison_messages_are_dead_lettered_with_their_reason(
    stack: Stack, fixture_server: Served, topics: dict[str, str], image_server: str
) -> None:
    settings = service_settings(
        stack,
        fixture_server,
        topics,
        fetch={
            "allowed_hosts": ("127.0.0.1",),
            "allow_private": True,
            "timeout_s": 0.5,
            "retries": 0,
        },
    )
    base = 0 if fixture_server.server == "torchserve" else 100  # no cache hit from the other
    healthy = events_for([jpeg(base + i) for i in range(6)])
    by_url = make_event("by-url", image_url=f"{image_server}/photo.jpg")
    poison: dict[str, bytes | dict] = {
        "invalid_json": b"{this is not json",
        "schema_violation": {"specversion": "1.0", "id": "no-data", "source": "x", "type": "y"},
        "image_undecodable": _inline("text", b"just some text, not a photo"),
        "image_truncated": _inline("cut", jpeg(5)[: len(jpeg(5)) // 2]),
        "fetch_disallowed": make_event("evil", image_url="https://evil.example.com/a.jpg"),
        "fetch_timeout": make_event("slow", image_url=f"{image_server}/slow.jpg"),
    }
    stream: list = []
    for i, (_, message) in enumerate(poison.items()):
        stream += [healthy[i], message]
    stream.append(by_url)
    metrics = Metrics()
    with running(settings, metrics):
        publish_events(stack, settings.kafka.input_topic, stream)
        verdicts = collect(stack, settings.kafka.verdict_topic, len(healthy) + 1)
        dead = collect(stack, settings.kafka.dead_letter_topic, len(poison))

    assert {r.key.decode() for r in verdicts} == {e["id"] for e in [*healthy, by_url]}
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    assert reasons == sorted(poison)
    for record in dead:
        headers = dict(record.headers)
        assert headers["original_topic"].decode() == settings.kafka.input_topic
        assert int(headers["original_offset"]) >= 0
        assert headers["message"]
    for reason in poison:
        assert metric_value(metrics, "geoverdict_dead_letters_total", {"reason": reason}) == 1


def _raw_producer(stack: Stack, **options: object) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap,
        acks="all",
        max_request_size=64 * 2**20,
        **options,
    )


def test_records_that_once_stopped_the_service_are_dead_letters_and_it_keeps_consuming(
    stack: Stack, fixture_model: str, topics: dict[str, str], image_server: str
) -> None:
    settings = service_settings(
        stack,
        fixture_model,
        topics,
        fetch={"allowed_hosts": ("127.0.0.1",), "allow_private": True},
    )
    limit = settings.kafka.max_message_bytes
    good = events_for([jpeg(4000 + i) for i in range(4)])
    surrogate = json.dumps(make_event("s", image_bytes=jpeg(1))).replace(
        '"id": "', '"id": "\\ud800'
    )
    big = make_event("big", image_bytes=b"y" * 15 * 2**20)

    def url_event(url: str) -> bytes:
        return json.dumps(make_event("by-url", image_url=url)).encode()

    poison: list[tuple[bytes, str | None]] = [
        # (value, compression): the broker takes each; the consumer once died on each.
        (b"{" + b"x" * (limit - 2000), None),  # just under the limit
        (b"{" + b"x" * (limit - 200), None),  # at the limit
        (b"{" + b"x" * (2 * limit), "gzip"),  # over the limit, compressed
        (json.dumps(big).encode(), "gzip"),  # 20 MiB once decompressed
        (url_event("http://[x/a.jpg"), None),
        (url_event("http://127.0.0.1:99999/a.jpg"), None),  # an allow-listed host
        (surrogate.encode(), None),
    ]
    metrics = Metrics()
    with running(settings, metrics):
        for value, compression in poison:
            producer = _raw_producer(stack, compression_type=compression)
            producer.send(settings.kafka.input_topic, value=value).get(timeout=30)
            producer.close()
        publish_events(stack, settings.kafka.input_topic, good)
        verdicts = collect(stack, settings.kafka.verdict_topic, len(good))
        dead = collect(stack, settings.kafka.dead_letter_topic, len(poison))
    assert {r.key.decode() for r in verdicts} == {e["id"] for e in good}
    reasons = Counter(dict(r.headers)["reason"].decode() for r in dead)
    # Under the limit a copy fits; at and over it, and the 20 MiB one, only a reference does.
    assert reasons == {"invalid_json": 1, "too_large": 3, "schema_violation": 3}
    for record in dead:
        assert len(record.value) < limit


def test_redis_down_verdicts_still_flow_and_errors_are_counted(
    stack: Stack, fixture_model: str, topics: dict[str, str], tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path, free_ports(1)[0])
    record, _ = redis.start()
    settings = service_settings(stack, fixture_model, topics, redis_url=redis.url)
    metrics = Metrics()
    first, second = (
        events_for([jpeg(i) for i in range(10)]),
        events_for([jpeg(100 + i) for i in range(10)]),
    )
    try:
        with running(settings, metrics):
            publish_events(stack, settings.kafka.input_topic, first)
            assert len(collect(stack, settings.kafka.verdict_topic, 10)) == 10
            process.stop(record)
            publish_events(stack, settings.kafka.input_topic, second)
            verdicts = collect(stack, settings.kafka.verdict_topic, 20)
    finally:
        process.stop(record)
    assert {r.key.decode() for r in verdicts} == {e["id"] for e in first + second}
    errors = sum(
        metric_value(metrics, "geoverdict_cache_errors_total", {"operation": op})
        for op in ("get", "set")
    )
    assert errors >= 1


def _private_server(kind: str, home: Path) -> tuple[Server, Served]:
    """A model server of its own serving the fixture model, to stop and start in a test."""
    if kind == "torchserve":
        store = home / "store"
        store.mkdir()
        build_archive(FIXTURE_HANDLER, "fixture", store)
        inference, management, metrics_port = free_ports(3)
        server = TorchServeServer(
            home, inference, management, metrics_port, store, ["fixture=fixture.mar"]
        )
        return server, Served(kind, "fixture", server.url("inference"), server.inference_key_file)
    http, metrics_port = free_ports(2)
    triton = TritonServer(home, http, metrics_port, home / "store", loaded=["fixture"])
    add_fixture_model(triton.repository)
    return triton, Served(kind, "fixture", triton.url(), triton.inference_key_file)


@pytest.mark.parametrize("kind", ["torchserve", "triton"])
def test_the_model_server_down_for_20_s_pauses_then_every_event_gets_its_verdict(
    stack: Stack, topics: dict[str, str], tmp_path: Path, kind: str
) -> None:
    server, served = _private_server(kind, tmp_path)
    record, _ = server.start()
    settings = service_settings(stack, served, topics, server={"retries": 1, "timeout_s": 5})
    metrics = Metrics()
    base = 1000 if kind == "torchserve" else 1100  # photos the cache cannot answer
    batches = [events_for([jpeg(base + 10 * b + i) for i in range(10)]) for b in range(3)]
    try:
        with running(settings, metrics):
            publish_events(stack, settings.kafka.input_topic, batches[0])
            assert len(collect(stack, settings.kafka.verdict_topic, 10)) == 10
            process.stop(record)
            publish_events(stack, settings.kafka.input_topic, batches[1])
            time.sleep(20)
            assert metric_value(metrics, "geoverdict_paused_partitions") > 0
            record, _ = server.start()  # a new process: new keys, the client re-reads them
            publish_events(stack, settings.kafka.input_topic, batches[2])
            verdicts = collect(stack, settings.kafka.verdict_topic, 30, timeout_s=120)
            dead = collect(stack, settings.kafka.dead_letter_topic, 1, timeout_s=2)
    finally:
        process.stop(record)
    assert {r.key.decode() for r in verdicts} >= {e["id"] for b in batches for e in b}
    assert dead == []
    assert metric_value(metrics, "geoverdict_inference_unavailable_total") >= 1
    assert metric_value(metrics, "geoverdict_paused_partitions") == 0


def test_two_consumers_share_the_partitions_and_answer_everything(
    stack: Stack, fixture_model: str, topics: dict[str, str]
) -> None:
    settings = service_settings(stack, fixture_model, topics)
    events = events_for([jpeg(2000 + i) for i in range(40)])
    with running(settings) as one, running(settings) as two:
        # Until the group settles, a member may still show the partitions it is giving up.
        deadline = time.monotonic() + 60
        shares: tuple[set[TopicPartition], set[TopicPartition]] = (set(), set())
        while time.monotonic() < deadline and not (
            shares[0] and shares[1] and not shares[0] & shares[1]
        ):
            time.sleep(0.2)
            shares = (set(one.consumer.assignment()), set(two.consumer.assignment()))
        publish_events(stack, settings.kafka.input_topic, events)
        verdicts = collect(stack, settings.kafka.verdict_topic, len(events))
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert len(shares[0] | shares[1]) == 4
    assert {r.key.decode() for r in verdicts} == {e["id"] for e in events}


def test_kill_9_mid_stream_then_restart_loses_nothing(
    stack: Stack, fixture_server: Served, topics: dict[str, str]
) -> None:
    settings = service_settings(stack, fixture_server, topics, max_poll_records=8)
    env = {
        **os.environ,
        "GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "GEOVERDICT_REDIS_URL": "",
        **fixture_server.environment(),
        "GEOVERDICT_METRICS_PORT": "0",
        "GEOVERDICT_MAX_POLL_RECORDS": "8",
        # The killed member leaves the group when its session times out: keep that short.
        "GEOVERDICT_SESSION_TIMEOUT_MS": "6000",
        "GEOVERDICT_GROUP_ID": topics["group_id"],
        **{f"GEOVERDICT_KAFKA_{k.upper()}": v for k, v in topics.items() if k != "group_id"},
    }
    cmd = [sys.executable, "-m", "geoverdict", "consume"]
    events = events_for([jpeg(3000 + i) for i in range(400)])
    publish_events(stack, settings.kafka.input_topic, events)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        collect(stack, settings.kafka.verdict_topic, 20, timeout_s=90)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    partial = collect(stack, settings.kafka.verdict_topic, 10**6, timeout_s=3)
    assert len({r.key for r in partial}) < len(events)  # killed mid-stream
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        collect(stack, settings.kafka.verdict_topic, len(events), timeout_s=60)
        # one more than every event: whatever is there after 3 s, a duplicate too
        verdicts = collect(stack, settings.kafka.verdict_topic, len(events) + 1, timeout_s=3)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    answered = {r.key.decode() for r in verdicts}
    assert answered == {e["id"] for e in events}
    assert len(verdicts) == len(answered)  # exactly_once, the default: no duplicate either
    assert second.returncode == 0
