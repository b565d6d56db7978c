"""Exactly once: each poll's answers of one input partition and that partition's next offset in
one Kafka transaction, so a read_committed subscriber sees every verdict or dead letter once.

Zombie fencing, as Kafka Streams did before KIP-447 (kafka-python's TxnOffsetCommit has no
generation check): one transactional producer per assigned input partition, its id
PREFIX-GROUP-TOPIC-PARTITION, made and initialised when the partition is assigned, closed when
it is revoked. A new owner's init_transactions aborts whatever its former owner left open and
fences that owner's producer: a consumer that froze past its session timeout and wakes up can
commit neither output nor offsets for the partitions it lost (its first send, offsets or commit
comes back fenced; it drops those partitions until the group gives it new ones, and never makes
their producers again before: that would fence their new owner).

A transaction that fails before its commit (a produce not acknowledged, offsets or the commit
refused, the broker gone) is aborted, nothing of it is visible, and its partition is sought
back to the batch's first offset: the batch comes again. A producer that cannot abort (a
broker restart) is closed and made again (its init fences only its own former self).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import (
    AuthorizationError,
    GroupAuthorizationFailedError,
    InvalidTransactionTimeoutError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from geoverdict_service.exceptions import KafkaUnavailableError, ServiceError
from geoverdict_service.kafka_workarounds import FENCED, is_fenced
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.delivery import Delivered, Delivery
from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.parts import Consumer, TransactionalProducer

log = logging.getLogger(__name__)

# Refusals no retry mends: the consumer stops with the setting to fix (its batch uncommitted).
# Raised by these types, also from init_transactions (kafka_workarounds, defect 3).
REFUSED = (AuthorizationError, InvalidTransactionTimeoutError)
# The partitions' transactions of one poll run side by side, this many at once. Each waits on
# the broker (acks, then the commit's markers), not on a core, so a thread per partition owned:
# 8 holds a lone consumer of an 8-partition input topic (docker-compose makes 6, the local
# stack 4); a consumer that owns more queues the rest behind them.
TRANSACTION_THREADS = 8


def transactional_id(prefix: str, group: str, tp: TopicPartition) -> str:
    """The transactional id of the producer for one input partition of one group."""
    return f"{prefix}-{group}-{tp.topic}-{tp.partition}"


class ExactlyOnce:
    """Per-partition transactional producers and the transaction of each partition's batch."""

    def __init__(
        self,
        make_producer: Callable[[str], TransactionalProducer],
        consumer: Consumer,
        delivery: Delivery,
        metrics: Metrics,
        group_id: str,
        prefix: str,
    ) -> None:
        self._make = make_producer
        self._consumer = consumer
        self._delivery = delivery
        self._metrics = metrics
        self._group = group_id
        self._prefix = prefix
        self._producers: dict[TopicPartition, TransactionalProducer] = {}
        self._fenced: set[TopicPartition] = set()  # lost to a new owner; until reassigned
        self._pool: ThreadPoolExecutor | None = None

    def check(self) -> None:
        """At start-up, before joining the group: may this consumer's user make transactional
        producers with its prefix, with its transaction timeout? One producer with a check id
        (PREFIX-GROUP-check, never a partition's) is initialised and closed.

        Raises KafkaUnavailableError naming the setting or the ACL to fix."""
        producer = self._make(f"{self._prefix}-{self._group}-check")
        try:
            producer.init_transactions()
        except REFUSED as exc:
            raise self._refusal(exc) from exc
        finally:
            producer.close(timeout=1.0)

    def _refusal(self, exc: BaseException) -> KafkaUnavailableError:
        if isinstance(exc, InvalidTransactionTimeoutError):
            cause = (
                "the broker refuses the transaction timeout: GEOVERDICT_TRANSACTION_TIMEOUT_MS "
                "must not exceed the broker's transaction.max.timeout.ms"
            )
        elif isinstance(exc, TopicAuthorizationFailedError):
            cause = "this user may not write the verdict or dead-letter topic: grant it WRITE"
        elif isinstance(exc, GroupAuthorizationFailedError):
            cause = f"this user may not commit the offsets of group {self._group!r}: grant it READ"
        else:
            cause = (
                f"this user may not use transactional ids starting {self._prefix!r}: grant it "
                "WRITE and DESCRIBE on transactional ids prefixed GEOVERDICT_TRANSACTIONAL_ID_"
                "PREFIX, and IDEMPOTENT_WRITE on the cluster (docs/operations.md), or set "
                "GEOVERDICT_PROCESSING_GUARANTEE=at_least_once"
            )
        return KafkaUnavailableError(f"exactly_once: {cause} ({type(exc).__name__})")

    # -- the group's assignment --------------------------------------------------------------
    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Make and initialise each new partition's producer: that fences its former owner
        before this consumer reads the partition's committed offset."""
        for tp in partitions:
            self._fenced.discard(tp)
            if tp not in self._producers:
                try:
                    self._producers[tp] = self._open(tp)
                except KafkaError as exc:  # made again at its first batch (a refusal stops it)
                    log.warning("no transactional producer for %s yet: %s", _name(tp), exc)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Close the producers of partitions the group took away (none has a transaction
        open: a batch is committed or aborted before the next poll)."""
        for tp in partitions:
            self._close(tp)

    def owned(self, tp: TopicPartition) -> bool:
        """False for a partition this consumer learnt it lost (fenced), until reassigned."""
        return tp not in self._fenced

    def producers(self) -> int:
        """How many transactional producers are open (one per owned partition)."""
        return len(self._producers)

    def close(self) -> None:
        """Close every producer."""
        for tp in list(self._producers):
            self._close(tp)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # -- one batch ---------------------------------------------------------------------------
    def complete(self, items: list[Item], answered: list[Item]) -> dict[TopicPartition, int]:
        """Produce each partition's answers and commit them with its next offset in one
        transaction, the partitions' transactions side by side; returns the partitions whose
        transaction was aborted, each sought back to (and keyed to) its batch's first offset."""
        first: dict[TopicPartition, int] = {}
        for item in items:
            first.setdefault(item.tp, item.record.offset)
        by_partition: dict[TopicPartition, list[Item]] = {}
        for item in answered:
            by_partition.setdefault(item.tp, []).append(item)
        if not by_partition:
            return {}
        pool = self._pool or ThreadPoolExecutor(
            TRANSACTION_THREADS, thread_name_prefix="transaction"
        )
        self._pool = pool
        futures = {
            tp: pool.submit(self._transaction, tp, part) for tp, part in by_partition.items()
        }
        rewound: dict[TopicPartition, int] = {}
        for tp, future in futures.items():
            delivered = future.result()
            if delivered is None:
                rewound[tp] = first[tp]
                self._consumer.seek(tp, first[tp])
            else:
                self._delivery.count(delivered)
        return rewound

    def _transaction(self, tp: TopicPartition, items: list[Item]) -> Delivered | None:
        """One partition's transaction; None when it was aborted (or the partition lost)."""
        started = time.perf_counter()
        try:
            producer = self._producers.get(tp) or self._reopen(tp)
        except REFUSED as exc:
            raise self._refusal(exc) from exc
        except KafkaError as exc:
            log.warning("transaction of %s not begun: %s", _name(tp), exc)
            self._metrics.transactions.labels(result="aborted").inc()
            return None
        try:
            producer.begin_transaction()
            delivered = self._delivery.deliver(items, producer, transaction=True)
            offsets = {tp: OffsetAndMetadata(items[-1].record.offset + 1, "", -1)}
            producer.send_offsets_to_transaction(offsets, self._group)
            producer.commit_transaction()
        except (KafkaError, ServiceError) as exc:
            error = _kafka_error(exc)
            if is_fenced(error):  # never made again: that would fence the new owner
                self._fence(tp, error)
                return None
            self._abort(tp, producer, exc)
            if isinstance(error, REFUSED):
                raise self._refusal(error) from exc
            return None
        self._metrics.transactions.labels(result="committed").inc()
        self._metrics.transaction_seconds.observe(time.perf_counter() - started)
        return delivered

    # -- producers -----------------------------------------------------------------------------
    def _open(self, tp: TopicPartition) -> TransactionalProducer:
        producer = self._make(transactional_id(self._prefix, self._group, tp))
        try:
            producer.init_transactions()
        except BaseException:
            producer.close(timeout=1.0)
            raise
        return producer

    def _reopen(self, tp: TopicPartition) -> TransactionalProducer:
        self._producers[tp] = producer = self._open(tp)
        return producer

    def _close(self, tp: TopicPartition) -> None:
        producer = self._producers.pop(tp, None)
        if producer is not None:
            try:
                producer.close(timeout=5.0)
            except KafkaError as exc:
                log.warning("closing the producer of %s: %s", _name(tp), exc)

    def _fence(self, tp: TopicPartition, exc: BaseException) -> None:
        """Another consumer owns the partition now: nothing of this batch was committed, and
        this consumer leaves the partition alone until the group assigns it again."""
        log.warning(
            "%s: fenced by its new owner (%s); nothing committed, the partition left to it",
            _name(tp),
            type(exc).__name__,
        )
        self._metrics.transactions.labels(result="fenced").inc()
        self._fenced.add(tp)
        self._close(tp)

    def _abort(
        self, tp: TopicPartition, producer: TransactionalProducer, exc: BaseException
    ) -> None:
        """Abort, and close the producer: the partition's next batch makes and initialises a
        new one. A producer that lost its transaction coordinator in a broker restart never
        found it again (kafka-python 2.3.3: each later transaction timed out until the consumer
        was restarted). Made only at the next batch, after a poll: a consumer that lost the
        partition meanwhile learns it there first, and never fences the new owner."""
        log.warning("transaction of %s aborted, its batch comes again: %s", _name(tp), exc)
        self._metrics.transactions.labels(result="aborted").inc()
        if isinstance(exc, KafkaTimeoutError):  # a step timed out: its coordinator is not there
            self._close(tp)  # the next producer's init_transactions aborts it, without waiting
            return
        try:
            producer.abort_transaction()
        except FENCED as fenced:
            self._fence(tp, fenced)
            return
        except KafkaError as cannot:  # a broker restart, say
            log.warning("%s: abort failed (%s)", _name(tp), cannot)
        self._close(tp)


def _kafka_error(exc: BaseException) -> BaseException:
    """The Kafka error `exc` stands for: itself, or the send's or flush's that a delivery's
    ServiceError wraps (its cause)."""
    cause = exc.__cause__
    return cause if isinstance(exc, ServiceError) and isinstance(cause, KafkaError) else exc


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"
