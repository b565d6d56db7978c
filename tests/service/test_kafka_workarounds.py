"""kafka-python 2.3.3's defects, each shown mended (the numbers are kafka_workarounds')."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidProducerEpochError,
    InvalidTransactionTimeoutError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
)
from kafka.producer.transaction_manager import (
    InitProducerIdHandler,
    TransactionalRequestResult,
    TransactionManager,
    TransactionState,
    TxnOffsetCommitHandler,
)
from kafka.protocol.init_producer_id import InitProducerIdResponse
from kafka.protocol.txn_offset_commit import TxnOffsetCommitResponse

from geoverdict_service.kafka_clients import make_transactional_producer
from geoverdict_service.kafka_workarounds import is_fenced, patch_transaction_handlers
from geoverdict_service.settings import KafkaSettings
from geoverdict_stack.stack import Stack


@pytest.mark.parametrize("step", ["abort_transaction", "commit_transaction", "offsets"])
def test_a_transaction_step_without_its_coordinator_times_out_instead_of_hanging(
    step: str,
) -> None:
    # 1. kafka-python waits forever for these; after a broker restart a consumer's abort did,
    # and the consumer answered nothing more until it was killed (the broker-restart proof).
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
    # 2. kafka-python 2.3.3 read `errors.CoordinatorNotAvailableError` off a dict for any error
    # in a TxnOffsetCommit response: the AttributeError died in the network callback, and
    # send_offsets_to_transaction waited forever (a consumer frozen past its session, then
    # woken, hung there and never stopped on SIGTERM; the frozen-consumer proof found it).
    patch_transaction_handlers()  # as every transactional producer's making
    for code, error in [(90, ProducerFencedError), (16, KafkaError)]:  # fenced; not coordinator
        manager = ready_manager()
        manager.begin_transaction()
        offsets = {TopicPartition("images", 0): OffsetAndMetadata(5, "", -1)}
        manager._pending_txn_offset_commits.update(offsets)
        result = TransactionalRequestResult()
        handler = TxnOffsetCommitHandler(manager, "grp", offsets, result)
        handler.handle_response(TxnOffsetCommitResponse[2](0, [("images", [(0, code)])]))
        assert result.failed  # send_offsets_to_transaction raises it, the batch is aborted
        assert isinstance(result.exception, error)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (50, InvalidTransactionTimeoutError),  # kafka-python: a plain KafkaError naming it
        (31, ClusterAuthorizationFailedError),  # no IDEMPOTENT_WRITE: a plain one too
        (53, TransactionalIdAuthorizationFailedError),  # already typed by kafka-python
    ],
)
def test_an_init_producer_id_refusal_is_raised_as_its_own_error_type(
    code: int, error: type[KafkaError]
) -> None:
    # 3. init_transactions raises what the handler's result holds.
    patch_transaction_handlers()
    manager = TransactionManager("geoverdict-grp-check", 60_000, api_version=(2, 6))
    manager._transition_to(TransactionState.INITIALIZING)
    handler = InitProducerIdHandler(manager, 60_000)
    handler.handle_response(InitProducerIdResponse[1](0, code, -1, -1))
    assert handler.result.failed
    assert type(handler.result.exception) is error


def test_an_init_producer_id_answer_worth_a_retry_is_still_retried() -> None:
    patch_transaction_handlers()
    manager = TransactionManager("geoverdict-grp-check", 60_000, api_version=(2, 6))
    manager._transition_to(TransactionState.INITIALIZING)
    handler = InitProducerIdHandler(manager, 60_000)
    handler.handle_response(InitProducerIdResponse[1](0, 51, -1, -1))  # CONCURRENT_TRANSACTIONS
    assert not handler.result.is_done  # queued again, as kafka-python does
    handler.handle_response(InitProducerIdResponse[1](0, 0, 7, 0))
    assert handler.result.succeeded


def test_both_errors_kafka_python_reports_a_fenced_producer_with_are_fencing() -> None:
    # 4. the coordinator's PRODUCER_FENCED and a partition leader's INVALID_PRODUCER_EPOCH
    assert is_fenced(ProducerFencedError()) and is_fenced(InvalidProducerEpochError())
    assert not is_fenced(KafkaTimeoutError())  # worth a retry: aborted, the batch comes again
    assert not is_fenced(KafkaError("fenced"))  # by type, never by text


@pytest.mark.integration
def test_a_transaction_timeout_above_the_brokers_maximum_is_refused_by_type(stack: Stack) -> None:
    # 3. on a real broker: kafka-python 2.3.3 alone raises KafkaError("Unexpected error in
    # InitProducerIdResponse: [Error 50] InvalidTransactionTimeoutError").
    from geoverdict_stack.kafka import TRANSACTION_MAX_TIMEOUT_MS

    kafka = KafkaSettings(bootstrap_servers=stack.kafka_bootstrap)
    producer = make_transactional_producer(
        kafka,
        f"workarounds-{uuid.uuid4().hex[:8]}",
        transaction_timeout_ms=TRANSACTION_MAX_TIMEOUT_MS + 1,
        max_block_ms=30_000,
    )
    try:
        with pytest.raises(InvalidTransactionTimeoutError):
            producer.init_transactions()
    finally:
        producer.close(timeout=1)


def ready_manager() -> TransactionManager:
    """A transaction manager as after init_transactions, without a broker."""
    manager = TransactionManager("geoverdict-grp-images-0", 60_000, api_version=(2, 1))
    manager._transition_to(TransactionState.INITIALIZING)
    manager._transition_to(TransactionState.READY)
    return manager
