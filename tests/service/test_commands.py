"""`geoverdict consume | publish | watch` as a user runs them: one Kafka configuration from the
environment for all three, SASL when configured, one-line start-up errors, bounded shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from geoverdict_stack.stack import Stack
from tests.service.conftest import collect, jpeg, transactional_prefix

pytestmark = pytest.mark.integration

GEOVERDICT = [sys.executable, "-m", "geoverdict"]


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without GEOVERDICT_* settings, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOVERDICT_")}
    return {**env, **values}


def kafka_env(
    stack: Stack,
    topics: dict[str, str],
    sasl: bool = False,
    tls: bool = False,
    user: str = "client",
    **extra: str,
) -> dict[str, str]:
    """The cluster named only by the environment: the plaintext listener, SASL/PLAIN, or
    SASL/PLAIN over TLS (the secure profile), as `user` (client, geoverdict or admin)."""
    values = {
        "GEOVERDICT_KAFKA_INPUT_TOPIC": topics["input_topic"],
        "GEOVERDICT_KAFKA_VERDICT_TOPIC": topics["verdict_topic"],
        "GEOVERDICT_KAFKA_DEAD_LETTER_TOPIC": topics["dead_letter_topic"],
        "GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
    }
    if sasl or tls:
        name, password = stack.kafka.sasl_credentials(user)
        values |= {
            "GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_sasl_bootstrap,
            "GEOVERDICT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "GEOVERDICT_KAFKA_SASL_MECHANISM": "PLAIN",
            "GEOVERDICT_KAFKA_SASL_USERNAME": name,
            "GEOVERDICT_KAFKA_SASL_PASSWORD": password,
        }
    if tls:
        values |= {
            "GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_ssl_bootstrap,
            "GEOVERDICT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "GEOVERDICT_KAFKA_SSL_CAFILE": str(stack.kafka.ca_file),
        }
    return clean_env(**(values | extra))


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GEOVERDICT, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def errors(stderr: str) -> list[str]:
    """The command's own error lines (kafka-python may warn about plaintext SASL above)."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def photo(tmp_path: Path, index: int) -> Path:
    path = tmp_path / f"photo-{index}.jpg"
    path.write_bytes(jpeg(500 + index))
    return path


@pytest.mark.parametrize("sasl", [False, True], ids=["plaintext", "sasl-plain"])
def test_publish_and_watch_reach_the_cluster_named_by_the_environment(
    stack: Stack, topics: dict[str, str], tmp_path: Path, sasl: bool
) -> None:
    env = kafka_env(stack, topics, sasl=sasl)
    published = run(["publish", str(photo(tmp_path, 1)), str(photo(tmp_path, 2))], env)
    assert published.returncode == 0, published.stderr
    assert f"published 2 events to {topics['input_topic']}" in published.stderr
    events = collect(stack, topics["input_topic"], 2, timeout_s=10)
    assert len(events) == 2

    # watch reads the verdict topic of the same configuration.
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    producer.send(topics["verdict_topic"], json.dumps({"id": "v-1"}).encode())
    producer.flush()
    producer.close()
    watched = run(["watch", "--json", "--from-beginning", "--max", "1", "--timeout", "20"], env)
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout.strip().splitlines()[-1]) == {"id": "v-1"}


def test_wrong_sasl_credentials_are_one_line_naming_the_setting(
    stack: Stack, topics: dict[str, str], tmp_path: Path
) -> None:
    env = kafka_env(stack, topics, sasl=True, GEOVERDICT_KAFKA_SASL_PASSWORD="wrong")
    started = time.monotonic()
    result = run(["publish", str(photo(tmp_path, 1))], env)
    assert result.returncode == 2
    assert time.monotonic() - started < 30  # not the client's silent retry loop
    (line,) = errors(result.stderr)
    assert "authentication failed" in line
    assert "GEOVERDICT_KAFKA_SASL_USERNAME" in line


def test_sasl_towards_a_plaintext_listener_is_one_line_naming_the_protocol(
    stack: Stack, topics: dict[str, str]
) -> None:
    env = kafka_env(stack, topics, sasl=True)
    env["GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS"] = stack.kafka_bootstrap  # plaintext port
    result = run(["watch", "--max", "1"], env)
    assert result.returncode == 2
    (line,) = errors(result.stderr)
    assert "does not speak SASL" in line
    assert "GEOVERDICT_KAFKA_SECURITY_PROTOCOL" in line


def test_a_missing_topic_is_one_line_naming_the_topic_and_its_setting(
    stack: Stack, topics: dict[str, str], tmp_path: Path
) -> None:
    env = kafka_env(
        stack,
        topics,
        GEOVERDICT_KAFKA_INPUT_TOPIC="no-such-topic",
        GEOVERDICT_KAFKA_CONNECT_TIMEOUT_S="3",
    )
    result = run(["publish", str(photo(tmp_path, 1))], env)
    assert result.returncode == 2
    (line,) = errors(result.stderr)
    assert "'no-such-topic' (GEOVERDICT_KAFKA_INPUT_TOPIC) does not exist" in line


def test_an_unreachable_cluster_ends_consume_with_one_line_in_bounded_time(
    stack: Stack, topics: dict[str, str]
) -> None:
    closed_port = _closed_port()
    env = kafka_env(
        stack,
        topics,
        GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port}",
        GEOVERDICT_KAFKA_CONNECT_TIMEOUT_S="4",
        GEOVERDICT_TORCHSERVE_TOKEN="unused",
    )
    started = time.monotonic()
    result = run(["consume", "--metrics-port", "0"], env)
    assert time.monotonic() - started < 20
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "Traceback" in line]
    assert errors == []
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: no Kafka broker at 127.0.0.1:{closed_port} answered within 4 s")
    )


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung broker, a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _sigterm_exit_time(env: dict[str, str], after_s: float) -> tuple[float, int, str]:
    proc = subprocess.Popen(
        [*GEOVERDICT, "consume", "--metrics-port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after_s)
    assert proc.poll() is None, "consume should still be starting"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return time.monotonic() - sent, proc.returncode, stderr


def test_sigterm_ends_consume_waiting_on_a_broker_that_never_answers(
    stack: Stack, topics: dict[str, str], silent_broker: int
) -> None:
    env = kafka_env(
        stack,
        topics,
        GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{silent_broker}",
        GEOVERDICT_KAFKA_CONNECT_TIMEOUT_S="600",  # it would wait ten minutes on its own
        GEOVERDICT_SHUTDOWN_TIMEOUT_S="5",
        GEOVERDICT_TORCHSERVE_TOKEN="unused",
    )
    took, status, stderr = _sigterm_exit_time(env, after_s=4)
    assert took < 5 + 2, stderr
    assert status == 0, stderr


def test_an_authentication_mismatch_ends_consume_at_once_instead_of_retrying_forever(
    stack: Stack, topics: dict[str, str]
) -> None:
    # SASL towards the plaintext listener with a ten-minute connect timeout: kafka-python alone
    # retries silently forever (and ignored SIGTERM there); the start-up check stops at the
    # first refusal, well within the shutdown timeout.
    env = kafka_env(
        stack,
        topics,
        sasl=True,
        GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap,
        GEOVERDICT_KAFKA_CONNECT_TIMEOUT_S="600",
        GEOVERDICT_TORCHSERVE_TOKEN="unused",
    )
    started = time.monotonic()
    result = run(["consume", "--metrics-port", "0"], env, timeout=60)
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert "does not speak SASL" in result.stderr.strip().splitlines()[-1]


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


def test_the_secure_profile_runs_end_to_end_over_sasl_ssl(
    stack: Stack, fixture_model: str, topics: dict[str, str], tmp_path: Path
) -> None:
    # The consumer as user `geoverdict`, a client publishing as `client`, both over TLS.
    consumer_env = kafka_env(
        stack,
        topics,
        tls=True,
        user="geoverdict",
        GEOVERDICT_GROUP_ID=topics["group_id"],
        GEOVERDICT_TRANSACTIONAL_ID_PREFIX=transactional_prefix(topics),  # granted to it alone
        GEOVERDICT_REDIS_URL=stack.redis_url,
        GEOVERDICT_TORCHSERVE_URL=stack.torchserve.url("inference"),
        GEOVERDICT_TORCHSERVE_KEY_FILE=str(stack.torchserve_key_file),
        GEOVERDICT_TORCHSERVE_MODEL_NAME=fixture_model,
        GEOVERDICT_METRICS_PORT="0",
    )
    consumer = subprocess.Popen(
        [*GEOVERDICT, "consume"],
        env=consumer_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        published = run(["publish", str(photo(tmp_path, 7))], kafka_env(stack, topics, tls=True))
        assert published.returncode == 0, published.stderr
        verdicts = collect(stack, topics["verdict_topic"], 1, timeout_s=60)
    finally:
        consumer.send_signal(signal.SIGTERM)
        _, stderr = consumer.communicate(timeout=60)
    assert len(verdicts) == 1, stderr[-2000:]
    assert consumer.returncode == 0, stderr[-2000:]


def test_a_consumer_user_without_transactional_ids_stops_at_start_naming_the_grant(
    stack: Stack, fixture_model: str, topics: dict[str, str]
) -> None:
    env = kafka_env(
        stack,
        topics,
        tls=True,
        user="geoverdict",
        GEOVERDICT_GROUP_ID=topics["group_id"],
        GEOVERDICT_TRANSACTIONAL_ID_PREFIX="not-granted",
        GEOVERDICT_REDIS_URL=stack.redis_url,
        GEOVERDICT_TORCHSERVE_URL=stack.torchserve.url("inference"),
        GEOVERDICT_TORCHSERVE_KEY_FILE=str(stack.torchserve_key_file),
        GEOVERDICT_TORCHSERVE_MODEL_NAME=fixture_model,
    )
    result = run(["consume", "--metrics-port", "0"], env, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = errors(result.stderr)
    assert "'not-granted'" in line and "GEOVERDICT_TRANSACTIONAL_ID_PREFIX" in line


def test_acls_keep_each_user_to_its_role(stack: Stack, topics: dict[str, str]) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    from geoverdict_service.kafka_clients import make_producer
    from geoverdict_service.settings import KafkaSettings

    def settings(user: str) -> KafkaSettings:
        name, password = stack.kafka.sasl_credentials(user)
        return KafkaSettings(
            bootstrap_servers=stack.kafka_ssl_bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username=name,
            sasl_password=password,
            ssl_cafile=stack.kafka.ca_file,
            connect_timeout_s=10,
        )

    # The consumer's user may not publish images (nor forge them into the stream).
    producer = make_producer(settings("geoverdict"), max_block_ms=10_000)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topics["input_topic"], b"forged").get(timeout=10)
    finally:
        producer.close(timeout=5)
    # A client may not read the dead letters (they may hold others' images); the admin may.
    publish_to = make_producer(settings("admin"))
    publish_to.send(topics["dead_letter_topic"], b"a dead letter").get(timeout=10)
    publish_to.close(timeout=5)
    assert read_all(settings("admin"), topics["dead_letter_topic"]) == [b"a dead letter"]
    assert read_all(settings("client"), topics["dead_letter_topic"]) == []


def read_all(kafka: Any, topic: str) -> list[bytes]:
    """What `kafka`'s user can read of `topic` in a few seconds (no group)."""
    from geoverdict_service.kafka_clients import make_consumer

    consumer = make_consumer(kafka, auto_offset_reset="earliest", consumer_timeout_ms=4000)
    try:
        consumer.subscribe([topic])
        return [record.value for record in consumer]
    finally:
        consumer.close()
