"""Client limits that agree with each other and with the broker (no frame-length errors)."""

from __future__ import annotations

import pytest

from geoverdict_service.kafka_clients import (
    FETCH_MAX_BYTES,
    make_consumer,
    make_producer,
    receive_limit,
)
from geoverdict_service.settings import KafkaSettings


@pytest.mark.parametrize("max_message_bytes", [1_048_588, 8 * 2**20])
def test_a_full_fetch_plus_one_whole_batch_fits_the_frame_limit(max_message_bytes: int) -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", max_message_bytes=max_message_bytes)
    consumer = make_consumer(kafka, api_version=(2, 6))  # no broker needed with a version
    try:
        config = consumer.config
        assert config["max_partition_fetch_bytes"] == max_message_bytes
        assert config["fetch_max_bytes"] == FETCH_MAX_BYTES
        assert config["receive_message_max_bytes"] == receive_limit(kafka)
        assert config["receive_message_max_bytes"] > FETCH_MAX_BYTES + max_message_bytes
        assert config["allow_auto_create_topics"] is False
    finally:
        consumer.close()
    producer = make_producer(kafka, api_version=(2, 6))
    try:
        assert producer.config["max_request_size"] == max_message_bytes
    finally:
        producer.close(timeout=1)


def test_subscribers_read_committed_records_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoverdict_service import collector, kafka_clients
    from geoverdict_service.settings import KafkaSettings

    seen: dict[str, object] = {}

    class Recorder:
        def __init__(self, **options: object) -> None:
            seen.update(options)

        def subscribe(self, topics: list[str]) -> None:
            seen["topics"] = topics

    monkeypatch.setattr(kafka_clients, "KafkaConsumer", Recorder)
    collector.VerdictCollector.from_settings(KafkaSettings(bootstrap_servers="k:9092"))
    assert seen["isolation_level"] == "read_committed"
    assert seen["topics"] == ["geoverdict.verdicts"]


@pytest.mark.parametrize(
    ("guarantee", "isolation"),
    [("exactly_once", "read_committed"), ("at_least_once", "read_uncommitted")],
)
def test_the_verdict_consumer_commits_by_hand_and_reads_input_as_its_guarantee_needs(
    guarantee: str, isolation: str
) -> None:
    from geoverdict_service.kafka_clients import make_verdict_consumer
    from tests.service.fakes import settings as service_settings

    settings = service_settings(processing_guarantee=guarantee, session_timeout_ms=6000)
    consumer = make_verdict_consumer(settings, api_version=(2, 6))
    try:
        config = consumer.config
        assert config["enable_auto_commit"] is False  # offsets go with the answers
        assert config["isolation_level"] == isolation
        assert config["heartbeat_interval_ms"] == 2000  # a third of the session
        assert config["group_id"] == settings.group_id
    finally:
        consumer.close()


def test_a_verdict_transaction_step_waits_no_longer_than_a_flush() -> None:
    from geoverdict_service.kafka_clients import make_verdict_transactional_producer
    from tests.service.fakes import settings as service_settings

    settings = service_settings(processing_guarantee="exactly_once", shutdown_timeout_s=2.5)
    producer = make_verdict_transactional_producer(settings, "txn-grp-images-0", (2, 6))
    try:
        assert producer.config["max_block_ms"] == 2500
        assert producer.config["transactional_id"] == "txn-grp-images-0"
        assert producer.config["client_id"].endswith("-txn-grp-images-0")
        assert producer.config["retry_backoff_ms"] == 5  # the next transaction's first send
    finally:
        producer.close(timeout=1)
