"""Checkpoint: what may be committed of a batch, committed after the acks, again at shutdown."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError

from geoverdict_service.exceptions import BadEventError
from geoverdict_service.pipeline.checkpoint import Checkpoint
from geoverdict_service.pipeline.items import Item
from tests.service import samples
from tests.service.fakes import INPUT, FakeConsumer, item


def tp(partition: int) -> TopicPartition:
    return TopicPartition(INPUT, partition)


def done(partition: int, offset: int) -> Item:
    """An item with its answer ready (a dead letter here: what it is does not matter)."""
    answered = item(partition, offset, b"image")
    answered.fail(BadEventError("bad", "invalid_json"))
    return answered


def owed(partition: int, offset: int) -> Item:
    """An item whose inference is still owed (TorchServe unavailable)."""
    return item(partition, offset, b"image")


def test_a_partition_is_committed_only_up_to_its_first_record_still_owed_an_inference() -> None:
    consumer = FakeConsumer(partitions=2)
    checkpoint = Checkpoint(consumer)
    # Partition 0: two answered, one owed, then one answered (cached) that must wait for it.
    items = [done(0, 0), done(0, 1), owed(0, 2), done(0, 3), done(1, 0), done(1, 1)]
    answered, cut = checkpoint.cut(items)
    assert [(i.tp.partition, i.record.offset) for i in answered] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert cut == {tp(0): 2}
    checkpoint.commit(answered)
    assert consumer.committed == {tp(0): 2, tp(1): 2}


def test_a_partition_owed_from_its_first_record_is_not_committed_at_all() -> None:
    consumer = FakeConsumer(partitions=2)
    checkpoint = Checkpoint(consumer)
    answered, cut = checkpoint.cut([owed(0, 5), done(0, 6), done(1, 0)])
    checkpoint.commit(answered)
    assert cut == {tp(0): 5}
    assert consumer.committed == {tp(1): 1}


def test_a_verdict_or_dead_letter_counts_as_answered() -> None:
    verdict = item(0, 0, b"image")
    verdict.prediction, verdict.payload = samples.confident_paris(), b"{}"
    answered, cut = Checkpoint.cut([verdict, done(0, 1)])
    assert (len(answered), cut) == (2, {})


def test_shutdown_commits_the_last_offsets_again_and_waits_for_it() -> None:
    class LostAsync(FakeConsumer):
        def commit_async(
            self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Any
        ) -> None:
            callback(offsets, RuntimeError("coordinator moved"))  # never reached the broker

    consumer = LostAsync(partitions=2)
    checkpoint = Checkpoint(consumer)
    checkpoint.commit([done(0, 0), done(0, 1)])
    checkpoint.commit([done(1, 0)])
    assert consumer.committed == {}
    checkpoint.final_commit()
    assert consumer.committed == {tp(0): 2, tp(1): 1}


def test_nothing_answered_commits_nothing_even_at_shutdown() -> None:
    class Counting(FakeConsumer):
        calls = 0

        def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
            self.calls += 1
            super().commit(offsets)

    consumer = Counting()
    checkpoint = Checkpoint(consumer)
    checkpoint.commit([])
    checkpoint.final_commit()
    assert consumer.calls == 0


def test_a_final_commit_refused_after_a_rebalance_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Rebalanced(FakeConsumer):
        def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
            raise CommitFailedError("the group rebalanced")

        def commit_async(
            self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Any
        ) -> None:
            return None

    checkpoint = Checkpoint(Rebalanced())
    checkpoint.commit([done(0, 0)])
    checkpoint.final_commit()
    assert any(
        r.levelno == logging.WARNING and "will be replayed" in r.getMessage()
        for r in caplog.records
    )
