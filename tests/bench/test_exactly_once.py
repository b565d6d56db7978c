"""The exactly-once proofs, at sizes that keep `make test` short, on the real local stack: each
`geoverdict consume` process is killed, frozen, outgrown or left without its broker, and every
answer is counted per event id by kcat reading read_committed (`geoverdict bench
exactly-once` runs them at full size)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from geoverdict.bench import exactly_once
from geoverdict.bench.exactly_once import Target, distinct
from geoverdict_stack.stack import Stack
from tests.stack_fixtures import Served, torchserve_served

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _photos(count: int = 8) -> list[bytes]:
    photos = []
    for k in range(count):
        out = io.BytesIO()
        Image.new("RGB", (48, 48), (k * 30 % 256, 90, 160)).save(out, "JPEG", quality=85)
        photos.append(out.getvalue())
    return photos


@pytest.fixture(scope="module")
def target(stack: Stack, fixture_model: str, tmp_path_factory: pytest.TempPathFactory) -> Target:
    """The stack's Kafka and the torch-free fixture model on TorchServe: the proofs are about
    Kafka, the model's speed only sets how long they take."""
    served: Served = torchserve_served(stack, fixture_model)
    # A transaction step waits at most the shutdown timeout: 10 s rather than 30 keeps the
    # broker-restart proofs short.
    return Target(
        stack.kafka_bootstrap,
        served.environment(),
        _photos(),
        tmp_path_factory.mktemp("proofs"),
        max_poll_records=8,
        settings={"shutdown_timeout_s": "10"},
    )


def test_distinct_changes_the_bytes_and_keeps_the_pixels() -> None:
    photo = _photos(1)[0]
    a, b = distinct(photo, 1), distinct(photo, 2)
    assert len({photo, a, b}) == 3
    assert Image.open(io.BytesIO(a)).tobytes() == Image.open(io.BytesIO(photo)).tobytes()


def test_kill_9_at_random_moments_answers_each_event_exactly_once(target: Target) -> None:
    run = exactly_once.kill_run(target, "exactly_once", events=400, kills=3, seed=1)
    assert len(run.kills) >= 2  # a kill due after the stream was answered is not made
    assert any(k.moment == "window" for k in run.kills)  # one died with a transaction open
    assert run.counts.reader == "kcat"
    assert run.counts.exact, run.counts
    assert run.last_exit_status == 0


def test_kill_9_with_at_least_once_loses_nothing_and_counts_its_duplicates(
    target: Target,
) -> None:
    run = exactly_once.kill_run(target, "at_least_once", events=160, kills=1, seed=2)
    assert run.counts.missing == 0
    # Killed with verdicts acknowledged and their offsets not committed: re-sent by the next
    # consumer (the duplicates exactly_once exists to remove).
    if run.kills[0].moment == "window":
        assert run.counts.duplicates > 0


def test_a_group_growing_and_shrinking_mid_stream_answers_each_event_exactly_once(
    target: Target,
) -> None:
    run = exactly_once.rebalance_run(target, events=240, rate=20.0, partitions=8)
    assert [c.label for c in run.changes] == ["1 -> 3", "3 -> 1"]
    assert run.counts.exact, run.counts
    assert all(status == 0 for status in run.exit_statuses)
    assert all(c.pause_s > 0 for c in run.changes)  # measured, not assumed


def test_a_frozen_consumer_is_fenced_and_its_transaction_never_shows(target: Target) -> None:
    run = exactly_once.freeze_run(target, events=200, rate=20.0, seed=3)
    assert run.caught and run.superseded  # its open transaction was aborted by the new owner
    assert run.counts.exact, run.counts
    assert run.fenced_logged or run.aborted_metric > 0  # it noticed, and said so
    assert run.exit_a == 0 and run.exit_b == 0


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_broker_restarted_mid_transaction_the_consumer_recovers_alone(
    target: Target, how: str
) -> None:
    run = exactly_once.broker_restart_run(target, how, events=200, rate=20.0, down_s=3.0)
    assert run.consumer_survived and run.recovery_s is not None, run.consumer_log_tail
    assert run.counts.exact, run.counts
    assert run.exit_status == 0
