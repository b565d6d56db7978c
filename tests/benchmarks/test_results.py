"""The benchmark's derived figures: the processing guarantee its numbers call for, and the costs
`geoverdict capacity` plans with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from benchmarks.results import (
    BenchResults,
    Guarantees,
    InProcess,
    Machine,
    Serving,
    ServingPoint,
    StreamResult,
    Streams,
    TritonBench,
)
from geoverdict.capacity import Measured


def run(events_per_s: float, p99_ms: float = 10.0, label: str = "run") -> StreamResult:
    return StreamResult(
        label=label,
        events=100,
        verdicts=100,
        seconds=100 / events_per_s,
        events_per_s=events_per_s,
        p50_ms=p99_ms / 2,
        p95_ms=p99_ms,
        p99_ms=p99_ms,
        rate="burst",
        cpu_s_per_1000=1.0,
    )


def exactly_once(pipeline: float, cached: float, paced_p99: float) -> Streams:
    return Streams(run(pipeline), run(cached), run(cached, paced_p99), run(10.0))


@pytest.mark.parametrize(
    ("pipeline", "cached", "paced_p99", "called_for"),
    [
        (95.0, 1900.0, 30.0, "exactly_once"),  # 5% slower, 20 ms more: worth it
        (85.0, 1900.0, 30.0, "at_least_once"),  # the model-bound stream 15% slower
        (95.0, 1700.0, 30.0, "at_least_once"),  # the cached path 15% slower
        (95.0, 1900.0, 70.0, "at_least_once"),  # 60 ms more at p99
    ],
)
def test_the_default_called_for_follows_the_issues_limits(
    pipeline: float, cached: float, paced_p99: float, called_for: str
) -> None:
    at_least_once = Guarantees(run(100.0), run(2000.0), run(2000.0, 10.0))
    compared = at_least_once.compare(exactly_once(pipeline, cached, paced_p99))
    assert compared["default_called_for"] == called_for
    assert compared["exactly_once"]["cached_events_per_s"] == cached
    assert compared["at_least_once"]["cached_events_per_s"] == 2000.0


def test_results_keep_both_guarantees_through_json() -> None:
    at_least_once = Guarantees(run(100.0, label="a"), run(2000.0), run(2000.0, 10.0))
    assert Guarantees.from_json(at_least_once.to_json()) == at_least_once


def test_the_gpu_box_estimate_is_the_cores_over_the_cpu_around_the_model() -> None:
    from benchmarks.results import GPU_MODEL_IMAGES_PER_S, gpu_box_estimate

    box = gpu_box_estimate(outside_ms=10.0, consumer_ms=1.0, broker_ms=2.0, decode_ms=4.0)
    assert box["events_per_s_decode_on_cpu"] == round(16_000 / 13)  # the issue's ~1,200
    assert box["events_per_s_decode_on_gpu"] == round(16_000 / 9)  # decode off the CPU
    tiny = gpu_box_estimate(outside_ms=0.1, consumer_ms=0.1, broker_ms=0.1, decode_ms=0.1)
    assert tiny["events_per_s_decode_on_gpu"] == GPU_MODEL_IMAGES_PER_S  # the GPU's own limit


def test_the_costs_a_run_writes_are_what_capacity_plans_with(tmp_path: Path) -> None:
    def serving(images_per_s: float, server: str) -> Serving:
        return Serving((ServingPoint(4, 8, images_per_s, 100.0, server),), 4)

    def cold(events_per_s: float, cpu_ms: float) -> StreamResult:
        return dataclasses.replace(run(events_per_s), cpu_s_per_1000=cpu_ms)

    results = BenchResults(
        machine=Machine("x86_64", 2, 8.0, "3.11", "2.14", 2, None),
        model="demo.mar",
        settings={},
        partitioning={},
        in_process=InProcess({4: 80.0}, 70.0),
        serving=serving(61.5, "torchserve"),
        streams=Streams(cold(49.6, 1.8), cold(670.0, 0.7), run(300.0), run(10.0)),
        seconds=1.0,
        triton=TritonBench(serving(53.0, "triton"), cold(44.4, 1.79), cold(651.0, 0.82)),
    )
    path = results.costs().write(tmp_path / "costs.json")
    torchserve, triton = Measured.read(path), Measured.read(path, "triton")
    assert (torchserve.server_images_per_s, torchserve.consumer_cpu_ms_cold) == (61.5, 1.8)
    assert (torchserve.consumer_cpu_ms_cached, torchserve.pipeline_events_per_s) == (0.7, 49.6)
    assert (triton.server_images_per_s, triton.consumer_cpu_ms_cached) == (53.0, 0.82)
    assert torchserve.cores == 2 and torchserve.gpu is None
