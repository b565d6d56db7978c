"""The exactly-once rules on fakes: each partition's answers and next offset in one transaction,
nothing visible or committed from an aborted one, the batch sought back and answered again,
a fenced consumer leaving its partition alone.

The same rules run against the real broker in tests/system/test_exactly_once.py (the proofs).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import (
    InvalidProducerEpochError,
    InvalidTransactionTimeoutError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from geoverdict_service.events import make_event
from geoverdict_service.exceptions import KafkaUnavailableError
from tests.service.conftest import jpeg
from tests.service.fakes import (
    DEAD,
    INPUT,
    VERDICTS,
    FakeCache,
    FakeConsumer,
    FakeInference,
    FakeProducer,
    build,
    step,
)


class NoCommitConsumer(FakeConsumer):
    """A consumer that refuses every commit of its own: offsets go in transactions only."""

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Any) -> None:
        raise AssertionError("exactly_once committed offsets outside a transaction")

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        raise AssertionError("exactly_once committed offsets outside a transaction")


def tp(partition: int) -> TopicPartition:
    return TopicPartition(INPUT, partition)


def stream(partitions: int, per_partition: int) -> NoCommitConsumer:
    consumer = NoCommitConsumer(partitions=partitions)
    for p in range(partitions):
        for k in range(per_partition):
            image = jpeg(5000 + 100 * p + k)
            consumer.append(p, json.dumps(make_event(f"p{p}-{k}", image_bytes=image)).encode())
    return consumer


def verdict_posts(parts: Any) -> list[str]:
    return [json.loads(s.value)["post_id"] for s in parts.transactions.on(VERDICTS)]


def test_each_partition_has_a_producer_of_its_own_named_after_group_topic_and_partition() -> None:
    _, parts = build(stream(3, 0), exactly_once=True, group_id="grp")
    ids = sorted(p.transactional_id for p in parts.transactions.producers)
    assert ids == ["geoverdict-grp-images-0", "geoverdict-grp-images-1", "geoverdict-grp-images-2"]
    assert all(p.epoch == 0 for p in parts.transactions.producers)  # initialised on assignment


def test_answers_and_offsets_are_committed_together_and_nowhere_else() -> None:
    service, parts = build(stream(2, 3), exactly_once=True)
    step(service, parts)
    assert sorted(verdict_posts(parts)) == [f"p{p}-{k}" for p in range(2) for k in range(3)]
    assert parts.consumer.committed == {tp(0): 3, tp(1): 3}
    assert parts.producer.sent == []  # the service's plain producer is not used at all
    committed = parts.metrics.registry.get_sample_value(
        "geoverdict_transactions_total", {"result": "committed"}
    )
    assert committed == 2
    assert (
        parts.metrics.registry.get_sample_value(
            "geoverdict_verdicts_produced_total", {"cache": "miss"}
        )
        == 6
    )


@pytest.mark.parametrize(
    ("step_name", "error"),
    [
        ("send", KafkaTimeoutError("send timed out")),
        ("offsets", KafkaError("NotCoordinatorError")),
        ("commit", KafkaError("CoordinatorLoadInProgressError")),
        ("offsets", KafkaTimeoutError("offsets not done within max_block_ms")),
        ("commit", KafkaTimeoutError("commit not done within max_block_ms")),
    ],
    ids=["produce", "send_offsets", "commit", "send_offsets_timeout", "commit_timeout"],
)
def test_a_failure_before_the_commit_aborts_and_the_batch_comes_again(
    step_name: str, error: KafkaError
) -> None:
    service, parts = build(stream(1, 4), exactly_once=True)
    assert parts.transactions is not None
    parts.transactions.fail[step_name] = error
    step(service, parts)
    # nothing of the aborted transaction is visible, no offset moved, the batch sought back
    assert verdict_posts(parts) == []
    assert parts.consumer.committed == {}
    assert parts.consumer.positions[tp(0)] == 0
    assert (
        parts.metrics.registry.get_sample_value(
            "geoverdict_transactions_total", {"result": "aborted"}
        )
        == 1
    )
    assert (
        parts.metrics.registry.get_sample_value(
            "geoverdict_verdicts_produced_total", {"cache": "miss"}
        )
        == 0
    )  # counted only once committed
    step(service, parts)  # the batch again: now committed, each answer exactly once
    assert verdict_posts(parts) == ["p0-0", "p0-1", "p0-2", "p0-3"]
    assert parts.consumer.committed == {tp(0): 4}
    # ... by a producer made and initialised again: the aborted one may have lost its
    # coordinator for good (a broker restart did that to kafka-python 2.3.3's producers)
    first, again = parts.transactions.producers
    assert first.closed and not again.closed and again.epoch == 1
    # A step that timed out is not aborted by a call that would wait as long again: the new
    # producer's initialisation aborts it (the fenced epoch above).
    timed_out = isinstance(error, KafkaTimeoutError) and step_name != "send"
    assert first.aborts == (0 if timed_out else 1)


def test_one_partitions_abort_leaves_the_others_committed() -> None:
    service, parts = build(stream(2, 2), exactly_once=True)
    assert parts.transactions is not None
    producer_of = {p.transactional_id: p for p in parts.transactions.producers}
    original = producer_of["geoverdict-geoverdict-images-1"].commit_transaction

    def failing_commit() -> None:
        raise KafkaTimeoutError("coordinator gone")

    producer_of["geoverdict-geoverdict-images-1"].commit_transaction = failing_commit  # type: ignore[method-assign]
    step(service, parts)
    assert sorted(verdict_posts(parts)) == ["p0-0", "p0-1"]
    assert parts.consumer.committed == {tp(0): 2}
    assert parts.consumer.positions[tp(1)] == 0
    producer_of["geoverdict-geoverdict-images-1"].commit_transaction = original  # type: ignore[method-assign]
    step(service, parts)
    assert sorted(verdict_posts(parts)) == ["p0-0", "p0-1", "p1-0", "p1-1"]


def test_a_producer_that_cannot_abort_is_made_again_for_the_next_batch() -> None:
    service, parts = build(stream(1, 2), exactly_once=True)
    assert parts.transactions is not None
    parts.transactions.fail["commit"] = KafkaTimeoutError("broker restarting")
    parts.transactions.fail["abort"] = KafkaTimeoutError("still restarting")
    step(service, parts)
    first, *_ = parts.transactions.producers
    assert first.closed
    step(service, parts)
    assert verdict_posts(parts) == ["p0-0", "p0-1"]
    assert len(parts.transactions.producers) == 2  # one made again, with the same id
    assert parts.transactions.producers[1].transactional_id == first.transactional_id


def test_a_fenced_consumer_commits_nothing_and_leaves_the_partition_to_its_new_owner() -> None:
    service, parts = build(stream(1, 3), exactly_once=True)
    assert parts.transactions is not None
    (mine,) = parts.transactions.producers
    parts.transactions.make(mine.transactional_id).init_transactions()  # the new owner's
    step(service, parts)
    assert verdict_posts(parts) == []
    assert parts.consumer.committed == {}
    assert mine.closed
    assert (
        parts.metrics.registry.get_sample_value(
            "geoverdict_transactions_total", {"result": "fenced"}
        )
        == 1
    )
    parts.consumer.append(0, json.dumps(make_event("later", image_bytes=jpeg(42))).encode())
    step(service, parts)  # its records are left alone: no producer made again, nothing sent
    assert verdict_posts(parts) == [] and len(parts.transactions.producers) == 2
    service.on_revoked({tp(0)})
    service.on_assigned({tp(0)})  # given back by the group: answered again
    parts.consumer.seek(tp(0), 0)
    step(service, parts)
    assert verdict_posts(parts) == ["p0-0", "p0-1", "p0-2", "later"]


def test_a_send_refused_as_fenced_leaves_the_partition_without_making_a_producer_again() -> None:
    # Found by the frozen-consumer proof: woken past its session, a consumer's produce came
    # back InvalidProducerEpoch (wrapped in the delivery's ServiceError), its abort failed "in
    # an error state", and the producer it made again for the next batch fenced the
    # partition's new owner: the two fenced each other in turn and the zombie committed its
    # stale batch (55 duplicates of 1,200).
    service, parts = build(stream(1, 3), exactly_once=True)
    assert parts.transactions is not None
    parts.transactions.fail["send"] = InvalidProducerEpochError()
    parts.transactions.fail["abort"] = KafkaError(
        "Cannot execute transactional method because we are in an error state: "
        "[Error 47] InvalidProducerEpochError"
    )
    step(service, parts)
    assert verdict_posts(parts) == [] and parts.consumer.committed == {}
    step(service, parts)  # the lost partition's records are left alone
    assert len(parts.transactions.producers) == 1  # none made again: the new owner stays
    assert (
        parts.metrics.registry.get_sample_value(
            "geoverdict_transactions_total", {"result": "fenced"}
        )
        == 1
    )


def test_revoked_partitions_close_their_producers() -> None:
    service, parts = build(stream(2, 0), exactly_once=True)
    assert parts.transactions is not None
    service.on_revoked({tp(1)})
    closed = [p.transactional_id for p in parts.transactions.producers if p.closed]
    assert closed == ["geoverdict-geoverdict-images-1"]
    assert parts.metrics.registry.get_sample_value("geoverdict_transactional_producers") == 1


def test_an_outage_commits_each_partition_up_to_its_first_owed_record() -> None:
    consumer = stream(1, 3)
    inference = FakeInference()
    owed = json.loads(consumer.log[tp(0)][1].value)["data"]["image"]["base64"]
    original = inference._answer

    def answer(image: bytes) -> Any:
        import base64

        if image == base64.b64decode(owed):
            inference.unavailable = True
            try:
                return original(image)
            finally:
                inference.unavailable = False
        return original(image)

    inference._answer = answer  # type: ignore[method-assign]
    service, parts = build(consumer, inference=inference, exactly_once=True)
    step(service, parts)
    assert verdict_posts(parts) == ["p0-0"]
    assert parts.consumer.committed == {tp(0): 1}
    assert parts.consumer.positions[tp(0)] == 1  # paused at the owed record


def test_a_copy_the_broker_refuses_aborts_then_comes_again_as_a_reference() -> None:
    consumer = NoCommitConsumer(partitions=1)
    consumer.append(0, b"{" * 5000)  # a dead letter whose copy the broker will refuse
    service, parts = build(consumer, exactly_once=True, cache=FakeCache())
    assert parts.transactions is not None
    for producer in parts.transactions.producers:
        producer.broker_limit = 3000  # a copy is over 5 KB, a reference under
    step(service, parts)
    assert parts.transactions.on(DEAD) == []  # the transaction was lost with the refusal
    step(service, parts)
    (letter,) = parts.transactions.on(DEAD)
    assert letter.header["reason"] == "too_large"
    assert parts.consumer.committed == {tp(0): 1}


def test_at_least_once_is_todays_behaviour() -> None:
    consumer = FakeConsumer(partitions=1)
    consumer.append(0, json.dumps(make_event("a", image_bytes=jpeg(1))).encode())
    service, parts = build(consumer, producer=FakeProducer())
    step(service, parts)
    assert len(parts.producer.on(VERDICTS)) == 1 and parts.consumer.committed == {tp(0): 1}
    assert parts.transactions is None


@pytest.mark.parametrize(
    ("refusal", "named"),
    [
        (TransactionalIdAuthorizationFailedError(), "GEOVERDICT_TRANSACTIONAL_ID_PREFIX"),
        # kafka-python 2.3.3 raised it untyped (kafka_workarounds, defect 3)
        (InvalidTransactionTimeoutError(), "GEOVERDICT_TRANSACTION_TIMEOUT_MS"),
    ],
    ids=["no-acl", "timeout-too-long"],
)
def test_a_user_refused_transactions_is_told_at_start_what_to_fix(
    refusal: Exception, named: str
) -> None:
    service, parts = build(stream(1, 0), exactly_once=True, group_id="grp")
    assert parts.transactions is not None
    parts.transactions.fail["init"] = refusal
    with pytest.raises(KafkaUnavailableError, match=named):
        service.transactions.check()
    check = parts.transactions.producers[-1]
    assert check.transactional_id == "geoverdict-grp-check"  # never a partition's id
    assert check.closed
    service.transactions.check()  # allowed now: passes


def test_a_refusal_mid_stream_stops_the_consumer_with_nothing_committed() -> None:
    service, parts = build(stream(1, 3), exactly_once=True)
    assert parts.transactions is not None
    parts.transactions.fail["send"] = TopicAuthorizationFailedError()  # an ACL taken away
    with pytest.raises(KafkaUnavailableError, match="may not write the verdict"):
        step(service, parts)  # no retry loop: the command ends with this line
    assert verdict_posts(parts) == []
    assert parts.consumer.committed == {}  # the batch is read again by the next owner
