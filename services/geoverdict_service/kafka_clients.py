"""kafka-python clients built from KafkaSettings, for every command alike.

Two things every client gets right here. Size limits agree with each other and with the
broker: a fetch answer may be `fetch_max_bytes` plus one whole record batch of up to
`max_message_bytes`, so the client's frame limit (`receive_message_max_bytes`, 1,000,000 by
default: less than one fetch of four partitions) is set above that. And start-up is bounded:
`check_cluster` connects, authenticates and finds the topics within `connect_timeout_s`, or
raises KafkaUnavailableError with one line that names the cause and the setting to fix, never
the client's silent retry loop (an authentication failure is retried forever by kafka-python).

kafka-python is pinned to 2.3.x (pyproject.toml); `check_cluster` uses its KafkaClient, and
the transactional producer is kafka_workarounds' (its defects, mended there). The verdict
service's clients and their tuning are the `make_verdict_*` functions.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.client_async import KafkaClient
from kafka.errors import (
    IllegalSaslStateError,
    NoBrokersAvailable,
    UnsupportedSaslMechanismError,
)

from geoverdict_service.exceptions import KafkaUnavailableError
from geoverdict_service.kafka_workarounds import (
    BoundedTransactionalProducer,
    ConnectionErrors,
    patch_transaction_handlers,
)
from geoverdict_service.settings import ENV_PREFIX, KafkaSettings, ServiceSettings

log = logging.getLogger(__name__)

FETCH_MAX_BYTES = 16 * 1024 * 1024
FRAME_MARGIN_BYTES = 64 * 1024
PROBE_SLICE_MS = 200  # the probe looks at the stop flag this often
VERSION_PROBE_MS = 2000  # one connection attempt; SIGTERM is seen between attempts


def common_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection, security and limits shared by every client."""
    return {
        **kafka.client_options(),
        # Topics are created on purpose (stack, compose, Helm), never by a typo's first use.
        "allow_auto_create_topics": False,
        "receive_message_max_bytes": receive_limit(kafka),
    }


def receive_limit(kafka: KafkaSettings) -> int:
    """The largest network frame a client accepts: a full fetch plus one oversized batch."""
    return FETCH_MAX_BYTES + kafka.max_message_bytes + FRAME_MARGIN_BYTES


def make_consumer(kafka: KafkaSettings, **options: Any) -> KafkaConsumer:
    """A consumer whose fetch sizes fit its frame limit and the topics' message size."""
    limits = {
        "fetch_max_bytes": FETCH_MAX_BYTES,
        "max_partition_fetch_bytes": kafka.max_message_bytes,
    }
    return _built(KafkaConsumer, kafka, {**common_options(kafka), **limits, **options})


def make_subscriber(kafka: KafkaSettings, **options: Any) -> KafkaConsumer:
    """A reader of verdicts or dead letters: read_committed, so it sees what the service
    committed (exactly_once: each answer once) and never an aborted transaction's records."""
    return make_consumer(kafka, isolation_level="read_committed", **options)


def make_producer(kafka: KafkaSettings, **options: Any) -> KafkaProducer:
    """A producer that refuses (as a failed future) a record larger than the broker takes."""
    limits = {"max_request_size": kafka.max_message_bytes}
    return _built(KafkaProducer, kafka, {**common_options(kafka), **limits, **options})


def make_transactional_producer(
    kafka: KafkaSettings, transactional_id: str, **options: Any
) -> KafkaProducer:
    """A transactional producer (idempotent, acks all) whose transaction steps are bounded."""
    limits = {"max_request_size": kafka.max_message_bytes}
    chosen = {
        **common_options(kafka),
        **limits,
        "acks": "all",
        "enable_idempotence": True,
        "transactional_id": transactional_id,
        **options,
    }
    patch_transaction_handlers()
    return _built(BoundedTransactionalProducer, kafka, chosen)


# -- the verdict service's clients (`geoverdict consume`) -------------------------------------
def verdict_client_id() -> str:
    """This process's client id (its producers' add their transactional id): a broker's logs
    and the group's description name the host and process."""
    return f"geoverdict-{socket.gethostname()}-{os.getpid()}"


def make_verdict_consumer(settings: ServiceSettings, api_version: tuple[int, ...]) -> KafkaConsumer:
    """The verdict group's member: offsets committed by the service, never automatically."""
    exactly_once = settings.processing_guarantee == "exactly_once"
    return make_consumer(
        settings.kafka,
        api_version=api_version,
        client_id=verdict_client_id(),
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.max_poll_records,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
        # Input produced in transactions (a platform's own) counts once it is committed.
        isolation_level="read_committed" if exactly_once else "read_uncommitted",
    )


def make_verdict_producer(settings: ServiceSettings, api_version: tuple[int, ...]) -> KafkaProducer:
    """at_least_once's producer of verdicts and dead letters."""
    return make_producer(
        settings.kafka,
        api_version=api_version,
        client_id=verdict_client_id(),
        acks="all",
        linger_ms=5,
        retries=5,
    )


def make_verdict_transactional_producer(
    settings: ServiceSettings, transactional_id: str, api_version: tuple[int, ...]
) -> KafkaProducer:
    """exactly_once's producer of one input partition's verdicts, dead letters and offsets."""
    return make_transactional_producer(
        settings.kafka,
        transactional_id,
        api_version=api_version,
        client_id=f"{verdict_client_id()}-{transactional_id}",
        linger_ms=5,
        transaction_timeout_ms=settings.transaction_timeout_ms,
        # each transaction step waits at most as long as a flush (kafka-python: forever)
        max_block_ms=round(settings.shutdown_timeout_s * 1000),
        # A transaction's first send waits on the last one's markers (the broker answers
        # CONCURRENT_TRANSACTIONS): kafka-python's 100 ms backoff made each 110 ms.
        retry_backoff_ms=5,
    )


def _built(cls: Any, kafka: KafkaSettings, options: dict[str, Any]) -> Any:
    try:
        return cls(**options)
    except NoBrokersAvailable as exc:
        raise KafkaUnavailableError(_unreachable(kafka, kafka.connect_timeout_s, None)) from exc


def _unreachable(kafka: KafkaSettings, waited_s: float, last: BaseException | None) -> str:
    seen = f" (last error: {type(last).__name__}: {_short(last)})" if last else ""
    return (
        f"no Kafka broker at {kafka.bootstrap_servers} answered within {waited_s:.0f} s{seen}: "
        f"check {ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS and {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL "
        f"(now {kafka.security_protocol})"
    )


def _short(exc: BaseException) -> str:
    text = str(exc).split(">: ")[-1]  # kafka-python prefixes the connection's repr
    return text[:200]


def check_cluster(
    kafka: KafkaSettings,
    topics: Mapping[str, str],
    stop: threading.Event | None = None,
) -> tuple[int, ...] | None:
    """Connect, authenticate and find `topics` (setting name -> topic) within the connect
    timeout; returns the broker's API version for the real clients (None when stopped).

    Raises KafkaUnavailableError: unreachable, credentials refused, or a topic missing."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + kafka.connect_timeout_s
    client_id = f"geoverdict-probe-{uuid.uuid4().hex[:8]}"
    errors = ConnectionErrors(client_id)
    conn_log = logging.getLogger("kafka.conn")
    conn_log.addFilter(errors)
    client: KafkaClient | None = None
    try:
        client = _connect(kafka, client_id, deadline, stop, errors)
        if client is None:
            return None
        if not _wait_for_topics(client, kafka, topics, deadline, stop, errors):
            return None
        version: tuple[int, ...] = tuple(client.config["api_version"])
        return version
    finally:
        conn_log.removeFilter(errors)
        if client is not None:
            client.close()


def _connect(
    kafka: KafkaSettings,
    client_id: str,
    deadline: float,
    stop: threading.Event,
    errors: ConnectionErrors,
) -> KafkaClient | None:
    """A client that reached a broker; None when stopped first."""
    while not stop.is_set():
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        try:
            return KafkaClient(
                **common_options(kafka),
                client_id=client_id,
                api_version_auto_timeout_ms=max(100, min(VERSION_PROBE_MS, remaining_ms)),
            )
        except NoBrokersAvailable:
            if time.monotonic() >= deadline:
                raise KafkaUnavailableError(
                    _unreachable(kafka, kafka.connect_timeout_s, errors.last())
                ) from None
            stop.wait(0.5)
    return None


def _wait_for_topics(
    client: KafkaClient,
    kafka: KafkaSettings,
    topics: Mapping[str, str],
    deadline: float,
    stop: threading.Event,
    errors: ConnectionErrors,
) -> bool:
    """True once the cluster's metadata lists every topic; False when stopped first."""
    # Ask for every topic: asking for a missing one by name makes each answer an error (and
    # kafka-python log it); a complete list says plainly which are absent.
    client.cluster.need_all_topic_metadata = True
    while not stop.is_set():
        _fail_on_authentication(kafka, errors)
        future = client.cluster.request_update()
        client.poll(timeout_ms=PROBE_SLICE_MS, future=future)
        if future.succeeded():
            missing = {
                setting: topic
                for setting, topic in topics.items()
                if not client.cluster.partitions_for_topic(topic)
            }
            if not missing:
                return True
        else:
            missing = {}
        if time.monotonic() >= deadline:
            _fail_on_authentication(kafka, errors)
            if missing:
                raise KafkaUnavailableError(_missing_topics(kafka, missing, client))
            last = future.exception if future.failed() else errors.last()
            raise KafkaUnavailableError(_unreachable(kafka, kafka.connect_timeout_s, last))
        if future.succeeded():
            stop.wait(0.5)  # a topic being created: look again shortly
    return False


def _fail_on_authentication(kafka: KafkaSettings, errors: ConnectionErrors) -> None:
    error = errors.authentication_error()
    if error is None:
        return
    if isinstance(error, IllegalSaslStateError):
        cause = "the broker's listener does not speak SASL"
        fix = f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL (now {kafka.security_protocol})"
    elif isinstance(error, UnsupportedSaslMechanismError):
        cause = f"the broker does not offer SASL mechanism {kafka.sasl_mechanism}"
        fix = f"{ENV_PREFIX}KAFKA_SASL_MECHANISM"
    else:
        cause = "the broker refused the SASL credentials"
        fix = f"{ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD"
    raise KafkaUnavailableError(
        f"Kafka at {kafka.bootstrap_servers}: authentication failed: {cause} "
        f"({type(error).__name__}); check {fix}"
    )


def _missing_topics(kafka: KafkaSettings, missing: Mapping[str, str], client: KafkaClient) -> str:
    unauthorized = set(client.cluster.unauthorized_topics)
    parts = []
    for setting, topic in missing.items():
        state = "is not readable by this user" if topic in unauthorized else "does not exist"
        parts.append(f"topic {topic!r} ({ENV_PREFIX}KAFKA_{setting.upper()}) {state}")
    return (
        f"Kafka at {kafka.bootstrap_servers}: {'; '.join(parts)}: create it (geoverdict stack "
        "up and docker compose create the default topics) or fix the setting"
    )
