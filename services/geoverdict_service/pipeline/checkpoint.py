"""The offsets to commit, as quix-streams' Checkpoint holds them.

A partition is answered, and committed, only up to its first record still owed an inference
(the model server unavailable); its commit is sent once Kafka acknowledged every answer it covers,
and on shutdown the last offsets are committed and waited for.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.parts import Consumer

log = logging.getLogger(__name__)


class Checkpoint:
    """What may be answered and committed of a batch, and the commits themselves."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}  # last offsets committed

    @staticmethod
    def cut(items: list[Item]) -> tuple[list[Item], dict[TopicPartition, int]]:
        """The items to answer now, and where each partition is cut: the offset of its first
        record still owed an inference. Nothing after a cut is answered (it comes again)."""
        answered: list[Item] = []
        cut: dict[TopicPartition, int] = {}
        for item in items:
            if item.tp in cut:
                continue
            if not item.answered:
                cut[item.tp] = item.record.offset  # its inference is still owed
                continue
            answered.append(item)
        return answered, cut

    def commit(self, answered: list[Item]) -> None:
        """Commit past the answered items without waiting for the answer: Kafka already
        acknowledged what these offsets cover, so a commit that fails only means those records
        come again (at least once). Waiting for it cost a round trip per batch (half the
        cached path's time)."""
        done_until = {item.tp: item.record.offset + 1 for item in answered}
        if not done_until:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in done_until.items()}
        self._pending.update(offsets)
        self._consumer.commit_async(offsets, callback=self._committed)

    def final_commit(self) -> None:
        """On shutdown: wait for the last offsets to be committed."""
        if not self._pending:
            return
        try:
            self._consumer.commit(dict(self._pending))
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced meanwhile: these records will be redelivered (at least once).
            log.warning("final commit failed, records will be replayed: %s", exc)

    @staticmethod
    def _committed(offsets: dict[TopicPartition, OffsetAndMetadata], result: Any) -> None:
        if isinstance(result, Exception):
            log.warning("async commit failed (records will be replayed): %s", result)
