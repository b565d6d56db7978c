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


@pytest.mark.parametrize("step", ["abort_transaction", "commit_transaction", "offsets"])
def test_a_transaction_step_without_its_coordinator_times_out_instead_of_hanging(
    step: str,
) -> None:
    # kafka-python waits forever for these; after a broker restart a consumer's abort did, and
    # the consumer answered nothing more until it was killed (the broker-restart proof).
    import time

    from kafka import OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaTimeoutError
    from kafka.producer.transaction_manager import TransactionState

    from geoverdict_service.kafka_clients import make_transactional_producer

    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9")  # nobody answers there
    producer = make_transactional_producer(kafka, "t-0", api_version=(2, 6), max_block_ms=300)
    try:
        manager = producer._transaction_manager
        manager._transition_to(TransactionState.INITIALIZING)  # as if init_transactions ran
        manager._transition_to(TransactionState.READY)
        producer.begin_transaction()
        manager._transaction_started = True  # as if a record or offsets went in: EndTxn is due
        started = time.monotonic()
        with pytest.raises(KafkaTimeoutError, match="max_block_ms"):
            if step == "offsets":
                offsets = {TopicPartition("images", 0): OffsetAndMetadata(1, "", -1)}
                producer.send_offsets_to_transaction(offsets, "group")
            else:
                getattr(producer, step)()
        assert time.monotonic() - started < 5
    finally:
        producer.close(timeout=1)


def test_a_txn_offset_commit_error_ends_the_transaction_instead_of_hanging_it() -> None:
    # kafka-python 2.3.3 read `errors.CoordinatorNotAvailableError` off a dict for any error in
    # a TxnOffsetCommit response: the AttributeError died in the network callback, and
    # send_offsets_to_transaction waited forever (a consumer frozen past its session, then
    # woken, hung there and never stopped on SIGTERM; the frozen-consumer proof found it).
    from kafka import OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaError, ProducerFencedError
    from kafka.producer.transaction_manager import (
        TransactionalRequestResult,
        TransactionManager,
        TransactionState,
        TxnOffsetCommitHandler,
    )
    from kafka.protocol.txn_offset_commit import TxnOffsetCommitResponse

    from geoverdict_service.kafka_clients import fail_transactions_on_txn_offset_commit_errors

    fail_transactions_on_txn_offset_commit_errors()  # as every transactional producer's making
    for code, error in [(90, ProducerFencedError), (16, KafkaError)]:  # fenced; not coordinator
        manager = TransactionManager("geoverdict-grp-images-0", 60_000, api_version=(2, 1))
        manager._transition_to(TransactionState.INITIALIZING)
        manager._transition_to(TransactionState.READY)
        manager.begin_transaction()
        offsets = {TopicPartition("images", 0): OffsetAndMetadata(5, "", -1)}
        manager._pending_txn_offset_commits.update(offsets)
        result = TransactionalRequestResult()
        handler = TxnOffsetCommitHandler(manager, "grp", offsets, result)
        handler.handle_response(TxnOffsetCommitResponse[2](0, [("images", [(0, code)])]))
        assert result.failed  # send_offsets_to_transaction raises it, the batch is aborted
        assert isinstance(result.exception, error)
