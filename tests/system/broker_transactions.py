"""The broker's own view of transactions: what `kafka-transactions.sh describe` prints (Kafka's
TransactionsCommand), asked through the same DescribeTransactions API (KIP-664) from Python.

The local stack's jars are the broker's (kafka_2.13 and what it needs); TransactionsCommand is
in kafka-tools, which they do not include. A JVM per question would also take seconds, while
the frozen-consumer proof must ask within its consumer's session timeout, many times over.
kafka-python 2.3 has no DescribeTransactions request, so it is declared here (version 0, the
only one; flexible encoding).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, for_code
from kafka.protocol.api import Request, Response
from kafka.protocol.find_coordinator import FindCoordinatorRequest
from kafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from tests.system.exceptions import HarnessError

ONGOING = "Ongoing"
TRANSACTIONAL_ID_NOT_FOUND = 105
TRANSACTION_COORDINATOR = 1  # FindCoordinator's key type for a transactional id


class DescribeTransactionsResponse_v0(Response):  # noqa: N801 (kafka-python's naming)
    API_KEY = 65
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "transaction_states",
            CompactArray(
                ("error_code", Int16),
                ("transactional_id", CompactString("utf-8")),
                ("transaction_state", CompactString("utf-8")),
                ("transaction_timeout_ms", Int32),
                ("transaction_start_time_ms", Int64),
                ("producer_id", Int64),
                ("producer_epoch", Int16),
                (
                    "topics",
                    CompactArray(
                        ("topic", CompactString("utf-8")),
                        ("partitions", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )
    FLEXIBLE_VERSION = True


class DescribeTransactionsRequest_v0(Request):  # noqa: N801
    API_KEY = 65
    API_VERSION = 0
    RESPONSE_TYPE = DescribeTransactionsResponse_v0
    SCHEMA = Schema(
        ("transactional_ids", CompactArray(CompactString("utf-8"))),
        ("tags", TaggedFields),
    )
    FLEXIBLE_VERSION = True


@dataclass(frozen=True)
class TransactionState:
    """One transactional id as its coordinator sees it."""

    transactional_id: str
    state: str  # Empty, Ongoing, PrepareCommit, CompleteCommit, PrepareAbort, CompleteAbort, ...
    producer_id: int
    producer_epoch: int
    partitions: tuple[str, ...]  # topic/partition of the open transaction

    @property
    def ongoing(self) -> bool:
        """A transaction is open: begun, neither committed nor aborted yet."""
        return self.state == ONGOING


class BrokerTransactions:
    """Asks the transaction coordinators of some transactional ids how their transactions are."""

    def __init__(self, bootstrap: str) -> None:
        try:
            self._admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, client_id="geoverdict-system-transactions"
            )
        except KafkaError as exc:
            raise HarnessError(f"no Kafka broker at {bootstrap}: {exc}") from exc
        self._coordinators: dict[str, int] = {}

    def describe(self, ids: Iterable[str]) -> dict[str, TransactionState]:
        """The state of each id (state "unknown" for one the coordinator never saw)."""
        by_node: dict[int, list[str]] = {}
        for transactional_id in ids:
            by_node.setdefault(self._coordinator(transactional_id), []).append(transactional_id)
        found: dict[str, TransactionState] = {}
        for node, asked in by_node.items():
            response = self._admin.send_request(DescribeTransactionsRequest_v0(asked, {}), node)
            for entry in response.transaction_states:
                error, tid, state, _, _, pid, epoch, topics, _ = entry
                if error == TRANSACTIONAL_ID_NOT_FOUND:
                    found[tid] = TransactionState(tid, "unknown", -1, -1, ())
                    continue
                if error:
                    raise HarnessError(
                        f"DescribeTransactions for {tid}: {for_code(error).__name__}"
                    )
                parts = tuple(f"{topic}/{p}" for topic, partitions, _ in topics for p in partitions)
                found[tid] = TransactionState(tid, state, pid, epoch, parts)
        return found

    def _coordinator(self, transactional_id: str) -> int:
        if transactional_id not in self._coordinators:
            request = FindCoordinatorRequest[1](transactional_id, TRANSACTION_COORDINATOR)
            response = self._admin.send_request(request)
            if response.error_code:
                raise HarnessError(
                    f"no transaction coordinator for {transactional_id}: "
                    f"{for_code(response.error_code).__name__}"
                )
            self._coordinators[transactional_id] = response.coordinator_id
        return self._coordinators[transactional_id]

    def close(self) -> None:
        """Close the admin connection."""
        self._admin.close()
