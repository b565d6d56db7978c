"""The exactly-once proofs on real servers: each `geoverdict consume` process is killed, frozen,
outgrown or left without its broker, and every answer is counted per event id by kcat reading
read_committed. Small in `make test`; `pytest tests/system --full-size` runs them at the
issue's sizes and writes bench/exactly-once.json and docs/benchmarks.md."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from benchmarks.topics import Topics
from tests.repo import REPO_ROOT
from tests.system import exactly_once
from tests.system.conftest import photos
from tests.system.exactly_once import ExactlyOnceResults, Target, distinct, transactional_ids
from tests.system.proofs import Sizes

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Prove = Callable[[str, Callable[[], Any]], Any]


def test_distinct_changes_the_bytes_and_keeps_the_pixels() -> None:
    photo = photos(1)[0]
    a, b = distinct(photo, 1), distinct(photo, 2)
    assert len({photo, a, b}) == 3
    assert Image.open(io.BytesIO(a)).tobytes() == Image.open(io.BytesIO(photo)).tobytes()


def test_the_harness_names_transactions_as_the_operations_guide_documents() -> None:
    topics = Topics("localhost:9092", "images-x", "verdicts-x", "dead-x", "group-x", 2)
    assert transactional_ids(topics, [1]) == ["geoverdict-bench-group-x-images-x-1"]
    assert len(transactional_ids(topics)) == 2
    assert "`PREFIX-GROUP-TOPIC-PARTITION`" in (REPO_ROOT / "docs" / "operations.md").read_text()


def test_kill_9_at_random_moments_answers_each_event_exactly_once(
    target: Target, sizes: Sizes, prove: Prove, proof_results: ExactlyOnceResults
) -> None:
    run = prove(
        "kill",
        lambda: exactly_once.kill_run(
            target, "exactly_once", sizes.kill_events, sizes.kills, seed=sizes.kill_seed
        ),
    )
    proof_results.kill["exactly_once"] = run
    assert len(run.kills) >= 2  # a kill due after the stream was answered is not made
    assert any(k.moment == "window" for k in run.kills)  # one died with a transaction open
    assert run.counts.reader == "kcat"
    assert run.counts.exact, run.counts
    assert run.last_exit_status == 0


def test_kill_9_with_at_least_once_loses_nothing_and_counts_its_duplicates(
    target: Target, sizes: Sizes, prove: Prove, proof_results: ExactlyOnceResults
) -> None:
    run = prove(
        "kill",
        lambda: exactly_once.kill_run(
            target,
            "at_least_once",
            sizes.at_least_once_events,
            sizes.at_least_once_kills,
            # paced: a burst of cold photos was sometimes answered whole before the kill's
            # moment came (no kill, nothing proved)
            rate=sizes.rate,
            seed=sizes.at_least_once_seed,
        ),
    )
    proof_results.kill["at_least_once"] = run
    assert run.kills  # a kill due after the stream was answered is not made
    assert run.counts.missing == 0
    # Killed with verdicts acknowledged and their offsets not committed: re-sent by the next
    # consumer (the duplicates exactly_once exists to remove).
    if run.kills[0].moment == "window":
        assert run.counts.duplicates > 0


def test_a_group_growing_and_shrinking_mid_stream_answers_each_event_exactly_once(
    target: Target, sizes: Sizes, prove: Prove, proof_results: ExactlyOnceResults
) -> None:
    run = prove(
        "rebalance",
        lambda: exactly_once.rebalance_run(
            target, sizes.rebalance_events, rate=sizes.rate, partitions=8
        ),
    )
    proof_results.rebalance = run
    assert [c.label for c in run.changes] == ["1 -> 3", "3 -> 1"]
    assert run.counts.exact, run.counts
    assert all(status == 0 for status in run.exit_statuses)
    assert all(c.pause_s > 0 for c in run.changes)  # measured, not assumed


def test_a_frozen_consumer_is_fenced_and_its_transaction_never_shows(
    target: Target, sizes: Sizes, prove: Prove, proof_results: ExactlyOnceResults
) -> None:
    run = prove(
        "freeze",
        lambda: exactly_once.freeze_run(
            target, sizes.freeze_events, rate=sizes.rate, seed=sizes.freeze_seed
        ),
    )
    proof_results.freeze = run
    assert run.caught and run.superseded  # its open transaction was aborted by the new owner
    assert run.counts.exact, run.counts
    # it noticed, and its metrics say so (geoverdict_transactions_total{result=...})
    assert run.fenced_metric > 0 or run.aborted_metric > 0
    assert run.exit_a == 0 and run.exit_b == 0


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_broker_restarted_mid_transaction_the_consumer_recovers_alone(
    target: Target, sizes: Sizes, prove: Prove, proof_results: ExactlyOnceResults, how: str
) -> None:
    run = prove(
        "broker-restart",
        lambda: exactly_once.broker_restart_run(
            target, how, sizes.restart_events, rate=sizes.rate, down_s=sizes.restart_down_s
        ),
    )
    proof_results.broker_restart[how] = run
    assert run.consumer_survived and run.recovery_s is not None, run.consumer_log_tail
    assert run.counts.exact, run.counts
    assert run.exit_status == 0
