"""Workarounds for kafka-python's defects: the only code that reaches a private attribute of the
client or replaces one of its handlers, so that a move to a mended kafka-python deletes here.

Each was seen with kafka-python 2.3.3, the pinned version (`>=2.3.3,<3`: 3.0.12 stalled consumer
groups, docs/operations.md "Kafka client"); the tests are in tests/service/ (this module's in
test_kafka_workarounds.py):

1. Transaction steps without a time bound: send_offsets_to_transaction, commit_transaction and
   abort_transaction wait forever (init_transactions and Java's client wait `max_block_ms`). A
   producer whose transaction coordinator moved in a broker restart never found it again, and
   its abort held the consumer's batch and its shutdown. BoundedTransactionalProducer bounds
   them. Test: test_a_transaction_step_without_its_coordinator_times_out_instead_of_hanging.
2. A typo in the TxnOffsetCommit handler: it reads `errors.CoordinatorNotAvailableError` off its
   dict of partition errors (meaning the module `Errors`), so any error in the response raises
   AttributeError inside the network callback and send_offsets_to_transaction waits forever (a
   consumer frozen past its session, then woken, hung there). Patched by
   `patch_transaction_handlers`: such a response fails the transaction, fenced codes as fenced.
   Test: test_a_txn_offset_commit_error_ends_the_transaction_instead_of_hanging_it.
3. An InitProducerId refusal without its type: a code the handler does not expect, such as
   INVALID_TRANSACTION_TIMEOUT (seen against Kafka 4.1), is raised as a plain KafkaError that
   names it only in its message. Patched by `patch_transaction_handlers`: every refusal that no
   retry mends is raised as kafka-python's own class for its code (InvalidTransactionTimeoutError,
   ClusterAuthorizationFailedError), so callers classify it by type.
   Tests: test_an_init_producer_id_refusal_is_raised_as_its_own_error_type (the handler) and
   test_a_transaction_timeout_above_the_brokers_maximum_is_refused_by_type (a real broker).
4. A fenced producer named two ways: a transaction coordinator answers PRODUCER_FENCED, a
   partition leader INVALID_PRODUCER_EPOCH, after which kafka-python's producer is in an error
   state its abort cannot leave. Both are `FENCED` (`is_fenced`): the producer is never made
   again, which would fence the partition's new owner. Tests:
   test_both_errors_kafka_python_reports_a_fenced_producer_with_are_fencing, and
   test_consumer_exactly_once.py::test_a_send_refused_as_fenced_leaves_the_partition_without_making_a_producer_again.
5. A producer that lost its transaction coordinator in a broker restart timed out every later
   transaction. No patch: the transaction rules close a producer after an abort and make a new
   one for the partition's next batch (pipeline/transactions.py, `ExactlyOnce._abort`). Test:
   test_consumer_exactly_once.py::test_a_failure_before_the_commit_aborts_and_the_batch_comes_again.
6. Connection failures only in the log: a broker that refuses the SASL credentials, or a
   listener that does not speak SASL, closes the connection, which kafka-python logs at
   "kafka.conn" and retries forever without raising (it ignored SIGTERM while it did).
   ConnectionErrors, a logging filter on that logger, collects them, so that
   kafka_clients.check_cluster stops at the first refusal and names the setting. Tests:
   test_commands.py::test_an_authentication_mismatch_ends_consume_at_once_instead_of_retrying_forever
   and test_wrong_sasl_credentials_are_one_line_naming_the_setting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import (
    IllegalSaslStateError,
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    NoError,
    ProducerFencedError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
    for_code,
)
from kafka.producer.transaction_manager import InitProducerIdHandler, TxnOffsetCommitHandler

# What a refused connection's errors say when it is authentication (defect 6).
AUTHENTICATION_ERRORS = (
    IllegalSaslStateError,  # SASL towards a listener without it
    UnsupportedSaslMechanismError,
    SaslAuthenticationFailedError,  # wrong user or password
)
# Another producer holds the transactional id now (defect 4: kafka-python says it two ways).
FENCED = (ProducerFencedError, InvalidProducerEpochError)


def is_fenced(error: BaseException) -> bool:
    """True when `error` says another producer took this one's transactional id."""
    return isinstance(error, FENCED)


class BoundedTransactionalProducer(KafkaProducer):
    """A KafkaProducer whose send_offsets_to_transaction, commit_transaction and
    abort_transaction wait at most `max_block_ms`, as init_transactions does, then raise
    KafkaTimeoutError (defect 1). Uses the producer's own transaction manager and sender, as
    those methods do."""

    def send_offsets_to_transaction(self, offsets: Any, consumer_group_id: str) -> None:
        self._bounded(
            "send_offsets_to_transaction",
            lambda m: m.send_offsets_to_transaction(offsets, consumer_group_id),
        )

    def commit_transaction(self) -> None:
        self._bounded("commit_transaction", lambda m: m.begin_commit())

    def abort_transaction(self) -> None:
        self._bounded("abort_transaction", lambda m: m.begin_abort())

    def _bounded(self, step: str, begin: Callable[[Any], Any]) -> None:
        manager = self._transaction_manager
        if manager is None:
            raise IllegalStateError(f"{step} needs a transactional_id")
        result = begin(manager)
        self._sender.wakeup()
        if not result.wait(timeout_ms=self.config["max_block_ms"]):
            raise KafkaTimeoutError(
                f"{step} not done within max_block_ms ({self.config['max_block_ms']} ms)"
            )


def patch_transaction_handlers() -> None:
    """Replace the response handlers of TxnOffsetCommit (defect 2) and InitProducerId (defect
    3), once per process; every transactional producer is made after it."""
    for handler_class, handle in (
        (TxnOffsetCommitHandler, _txn_offset_commit_response),
        (InitProducerIdHandler, _init_producer_id_response),
    ):
        original = handler_class.handle_response
        if not getattr(original, "patched", False):
            handler_class.handle_response = _patched(handle, original)


Handle = Callable[[Callable[[Any, Any], None], Any, Any], None]  # (original, handler, response)


def _patched(handle: Handle, original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    def handle_response(handler: Any, response: Any) -> None:
        handle(original, handler, response)

    handle_response.patched = True  # type: ignore[attr-defined]
    return handle_response


def _txn_offset_commit_response(
    original: Callable[[Any, Any], None], handler: Any, response: Any
) -> None:
    """The library's handling, but an error code fails the transaction instead of the
    AttributeError: fenced codes as fenced, others as abortable (aborted, the batch comes
    again)."""
    try:
        original(handler, response)
    except AttributeError:
        errors = [
            for_code(code) for _, partitions in response.topics for _, code in partitions if code
        ]
        fenced = [error for error in errors if issubclass(error, FENCED)]
        if fenced:
            handler.fatal_error(fenced[0]())
        else:
            names = ", ".join(sorted({error.__name__ for error in errors}))
            handler.abortable_error(KafkaError(f"TxnOffsetCommit failed: {names}"))


def _init_producer_id_response(
    original: Callable[[Any, Any], None], handler: Any, response: Any
) -> None:
    """The library's handling, but a refusal no retry mends fails with its own error class."""
    error = for_code(response.error_code)
    if error is NoError or error.retriable:  # the library retries those it knows
        original(handler, response)
    else:
        handler.fatal_error(error())


class ConnectionErrors(logging.Filter):
    """Defect 6: collects the errors the connections of the client named `client_id` close with
    (add it to the "kafka.conn" logger), and keeps them out of the log: check_cluster reports
    them in its own one line."""

    def __init__(self, client_id: str) -> None:
        super().__init__()
        self.client_id = client_id
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if not args or f"client_id={self.client_id}" not in str(args[0]):
            return True
        errors = [a for a in args[1:] if isinstance(a, BaseException)]
        if errors:
            with self._lock:
                self.errors.extend(errors)
        return record.levelno < logging.WARNING

    def authentication_error(self) -> BaseException | None:
        with self._lock:
            return next((e for e in self.errors if isinstance(e, AUTHENTICATION_ERRORS)), None)

    def last(self) -> BaseException | None:
        with self._lock:
            return self.errors[-1] if self.errors else None
