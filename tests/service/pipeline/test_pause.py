"""The pause while TorchServe is unavailable: partitions paused and sought back, resumed after."""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from geoverdict_service.backoff import Backoff
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.pause import Pauser
from tests.service.fakes import INPUT, FakeConsumer, FakeInference


class Quiet(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


def tp(partition: int) -> TopicPartition:
    return TopicPartition(INPUT, partition)


def paused_parts(partitions: int = 2) -> tuple[Pauser, FakeConsumer, FakeInference, Metrics]:
    """A pauser over an assigned consumer, TorchServe down, records 0-4 in every partition."""
    consumer, inference, metrics = FakeConsumer(partitions), FakeInference(), Metrics()
    for partition in range(partitions):
        for _ in range(5):
            consumer.append(partition, b"{}")
    consumer.subscribe([INPUT], listener=Quiet())
    inference.unavailable = True
    return Pauser(consumer, inference, metrics, Backoff(2.0, 30.0)), consumer, inference, metrics


def test_an_outage_pauses_every_partition_and_seeks_back_to_each_cut() -> None:
    pauser, consumer, _, metrics = paused_parts()
    consumer.poll(timeout_ms=0)  # everything was handed out
    pauser.pause({tp(0): 2})
    assert pauser.paused
    assert consumer.paused() == {tp(0), tp(1)}
    assert consumer.poll(timeout_ms=0) == {}  # nothing more while paused
    assert consumer.positions[tp(0)] == 2  # record 2 comes again after the pause
    assert consumer.positions[tp(1)] == 5
    assert metrics.registry.get_sample_value("geoverdict_paused_partitions") == 2
    assert metrics.registry.get_sample_value("geoverdict_inference_unavailable_total") == 1


def test_partitions_resume_only_after_the_backoff_and_only_once_torchserve_is_healthy() -> None:
    pauser, consumer, inference, metrics = paused_parts()
    pauser.pause({})
    first = pauser.resume_at
    inference.unavailable = False
    pauser.maybe_resume(now=first - 0.1)  # too early: TorchServe is not even asked
    assert pauser.paused
    inference.unavailable = True
    pauser.maybe_resume(now=first)  # still down: ask again after a longer wait
    assert pauser.paused and pauser.resume_at == first + 4.0
    inference.unavailable = False
    pauser.maybe_resume(now=pauser.resume_at)
    assert not pauser.paused
    assert consumer.paused() == set()
    assert metrics.registry.get_sample_value("geoverdict_paused_partitions") == 0


def test_after_a_recovery_the_next_outage_backs_off_from_the_start_again() -> None:
    pauser, _, inference, _ = paused_parts()
    pauser.pause({})  # retry in 2 s
    pauser.maybe_resume(now=pauser.resume_at)  # still down: 4 s, then 8 s
    inference.unavailable = False
    pauser.maybe_resume(now=pauser.resume_at)
    assert not pauser.paused
    inference.unavailable = True
    before = time.monotonic()
    pauser.pause({})
    assert pauser.resume_at - before == pytest.approx(2.0, abs=0.5)  # not 8 s


def test_partitions_assigned_during_an_outage_stay_paused() -> None:
    pauser, consumer, _, metrics = paused_parts(partitions=3)
    pauser.keep_paused({tp(2)})  # not paused yet: a new partition is consumed
    assert consumer.paused() == set()
    pauser.pause({})
    consumer.resume(tp(2))  # as a rebalance hands it over unpaused
    pauser.keep_paused({tp(2)})
    assert consumer.paused() == {tp(0), tp(1), tp(2)}
    assert metrics.registry.get_sample_value("geoverdict_paused_partitions") == 3
