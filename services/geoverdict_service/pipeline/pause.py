"""The pause while the model server is unavailable: every assigned partition paused (and newly
assigned ones kept so), each sought back to its cut, and resumed once the model server is healthy
again, asked with backoff. An outage is never an event's fault: nothing is dead-lettered."""

from __future__ import annotations

import logging
import time

from kafka import TopicPartition

from geoverdict_service.backoff import Backoff
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.parts import Consumer, Inference

log = logging.getLogger(__name__)


class Pauser:
    """Pauses the consumer's partitions while the model server is down, resumes them after."""

    def __init__(
        self, consumer: Consumer, inference: Inference, metrics: Metrics, backoff: Backoff
    ) -> None:
        self._consumer = consumer
        self._inference = inference
        self._metrics = metrics
        self._backoff = backoff
        self._paused = False
        self._resume_at = 0.0  # time.monotonic() of the next health check

    @property
    def paused(self) -> bool:
        """True from pause() until the model server answered healthy again."""
        return self._paused

    @property
    def resume_at(self) -> float:
        """When (time.monotonic()) the model server's health is asked next."""
        return self._resume_at

    def pause(self, cut: dict[TopicPartition, int]) -> None:
        """Seek each cut partition back to its first unanswered record; pause every one."""
        for tp, offset in cut.items():
            self._consumer.seek(tp, offset)
        assignment = self._consumer.assignment()
        self._consumer.pause(*assignment)
        self._paused = True
        delay = self._backoff.next()
        self._resume_at = time.monotonic() + delay
        self._metrics.inference_unavailable.inc()
        self._metrics.paused.set(len(assignment))
        log.warning(
            "paused %d partitions; retrying the model server in %.1f s", len(assignment), delay
        )

    def maybe_resume(self, now: float | None = None) -> None:
        """Once the backoff has passed (`now`: time.monotonic() unless given), resume every
        paused partition if the model server is healthy, or wait longer."""
        now = time.monotonic() if now is None else now
        if not self._paused or now < self._resume_at:
            return
        if not self._inference.healthy():
            self._resume_at = now + self._backoff.next()
            return
        self._consumer.resume(*self._consumer.paused())
        self._paused = False
        self._backoff.reset()
        self._metrics.paused.set(0)
        log.info("the model server is back: partitions resumed")

    def keep_paused(self, assigned: set[TopicPartition]) -> None:
        """Keep newly assigned partitions paused while the model server is down."""
        if self._paused and assigned:
            self._consumer.pause(*assigned)
            self._metrics.paused.set(len(self._consumer.paused()))
