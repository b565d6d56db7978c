"""`geoverdict capacity`: how many partitions, consumers and model-server replicas an event
rate needs, and the lag threshold to scale consumers on, from what `geoverdict bench` measured
for the chosen model server (TorchServe, or Triton with `--model-server triton`).

The model (docs/operations.md, "Capacity"): a cache miss costs one inference and the consumer's
CPU per cold event with that server, a hit only the cached CPU cost. A consumer is one Python
process, so about one core; a model-server replica is what the benchmark ran (its machine's
cores, or its GPU). Both are planned at `utilization` of what was measured, so that a
burst or a slower day does not make lag grow at once. The partitions cap the consumers that can
work (Kafka gives a partition to one consumer of the group), so the plan leaves room to double.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIN_PARTITIONS = 6  # docker-compose's default: room to grow on a small stream


class CapacityError(ValueError):
    """The benchmark results cannot be read, or a plan's input is out of range."""


@dataclass(frozen=True)
class Measured:
    """The figures of one `geoverdict bench` run that the plan needs."""

    source: str
    cores: int
    gpu: str | None
    server_images_per_s: float  # one model server, cold images, at its best concurrency
    consumer_cpu_ms_cold: float  # consumer CPU per event that misses the cache
    consumer_cpu_ms_cached: float  # ... and per event answered from the cache
    pipeline_events_per_s: float  # the whole pipeline on the benchmark's one machine
    server: str = "torchserve"  # or triton

    @property
    def server_name(self) -> str:
        """The model server as the operator reads it."""
        return {"torchserve": "TorchServe", "triton": "Triton"}[self.server]

    @classmethod
    def from_results(cls, path: Path, server: str = "torchserve") -> Measured:
        """Read bench/results.json (or another run's): the figures with `server`."""
        from geoverdict.bench.results import BenchResults, ResultsError  # noqa: PLC0415

        try:
            results = BenchResults.read(path)
        except ResultsError as exc:
            raise CapacityError(f"{exc}; run `make bench`") from exc
        serving, pipeline, cached = (
            results.serving,
            results.streams.pipeline,
            results.streams.cached,
        )
        if server == "triton":
            if results.triton is None:
                raise CapacityError(f"{path} has no Triton figures; run `make bench`")
            serving, pipeline = results.triton.serving, results.triton.pipeline
            cached = results.triton.cached
        if pipeline.cpu_s_per_1000 is None or cached.cpu_s_per_1000 is None:
            raise CapacityError(f"{path} has no consumer CPU figures; run `make bench`")
        return cls(
            source=str(path),
            cores=results.machine.cores,
            gpu=results.machine.gpu,
            server_images_per_s=serving.images_per_s,
            consumer_cpu_ms_cold=pipeline.cpu_s_per_1000,
            consumer_cpu_ms_cached=cached.cpu_s_per_1000,
            pipeline_events_per_s=pipeline.events_per_s,
            server=server,
        )


@dataclass(frozen=True)
class Plan:
    """What a target rate needs, and the figures it was derived from."""

    events_per_s: float
    cache_hit_ratio: float
    utilization: float
    lag_seconds: float
    consumer_events_per_s: float  # what one consumer sustains at `utilization`
    server_events_per_s: float  # cold images one model-server replica sustains at it
    consumers: int
    server_replicas: int
    partitions: int
    lag_threshold: int
    consumer_cores: float
    measured: Measured

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def table(self) -> str:
        """The plan as the operator reads it."""
        m = self.measured
        device = f"GPU {m.gpu}" if m.gpu else f"CPU, {m.cores} cores"
        return "\n".join(
            [
                f"Capacity for {self.events_per_s:,.0f} events/s, "
                f"{self.cache_hit_ratio:.0%} answered from the cache "
                f"(measured: {m.source}, {m.server_name} on {device}; planned at "
                f"{self.utilization:.0%} of it):",
                "",
                "| what | value | from |",
                "|---|---|---|",
                f"| consumer replicas | {self.consumers} | one consumer sustains "
                f"{self.consumer_events_per_s:,.0f} events/s ({m.consumer_cpu_ms_cold:.2f} CPU-ms "
                f"per miss, {m.consumer_cpu_ms_cached:.2f} per hit) |",
                f"| consumer CPU | {self.consumer_cores:.2f} cores | the same costs at the "
                f"target rate |",
                f"| {m.server_name} replicas | {self.server_replicas} | one replica sustains "
                f"{self.server_events_per_s:,.0f} cold images/s "
                f"(measured {m.server_images_per_s:.1f}) |",
                f"| input topic partitions | {self.partitions} | room for twice the consumers "
                f"(at least {MIN_PARTITIONS}) |",
                f"| KEDA lagThreshold | {self.lag_threshold} | {self.lag_seconds:g} s of "
                f"events per consumer at the target rate |",
                f"| KEDA maxReplicas | {self.partitions} | a consumer beyond the partitions "
                f"idles |",
            ]
        )


def plan(
    measured: Measured,
    events_per_s: float,
    cache_hit_ratio: float = 0.0,
    utilization: float = 0.7,
    lag_seconds: float = 10.0,
) -> Plan:
    """The replicas, partitions and lag threshold for `events_per_s` (see the module's doc)."""
    if events_per_s <= 0:
        raise CapacityError(f"events per second must be > 0, got {events_per_s}")
    if not 0 <= cache_hit_ratio <= 1:
        raise CapacityError(f"cache hit ratio must be within 0..1, got {cache_hit_ratio}")
    if not 0 < utilization <= 1:
        raise CapacityError(f"utilization must be within (0, 1], got {utilization}")
    if lag_seconds <= 0:
        raise CapacityError(f"lag seconds must be > 0, got {lag_seconds}")
    miss = 1.0 - cache_hit_ratio
    cpu_ms = (
        miss * measured.consumer_cpu_ms_cold + cache_hit_ratio * measured.consumer_cpu_ms_cached
    )
    consumer_rate = 1000.0 / cpu_ms * utilization
    server_rate = measured.server_images_per_s * utilization
    consumers = max(1, math.ceil(events_per_s / consumer_rate))
    return Plan(
        events_per_s=events_per_s,
        cache_hit_ratio=cache_hit_ratio,
        utilization=utilization,
        lag_seconds=lag_seconds,
        consumer_events_per_s=consumer_rate,
        server_events_per_s=server_rate,
        consumers=consumers,
        server_replicas=max(1, math.ceil(events_per_s * miss / server_rate)),
        partitions=max(MIN_PARTITIONS, 2 * consumers),
        lag_threshold=max(1, math.ceil(events_per_s / consumers * lag_seconds)),
        consumer_cores=events_per_s * cpu_ms / 1000.0,
        measured=measured,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `capacity` command."""
    parser = subparsers.add_parser(
        "capacity",
        help="partitions, consumers, model-server replicas and lag threshold for an event rate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events-per-s", type=float, required=True, metavar="N")
    parser.add_argument(
        "--cache-hit-ratio", type=float, default=0.0, help="share of repeated images (0..1)"
    )
    parser.add_argument(
        "--results", type=Path, help="a `geoverdict bench` result (default bench/results.json)"
    )
    parser.add_argument("--utilization", type=float, default=0.7, help="of measured throughput")
    parser.add_argument(
        "--lag-seconds", type=float, default=10.0, help="backlog per consumer before scaling out"
    )
    parser.add_argument(
        "--model-server",
        choices=("torchserve", "triton"),
        default="torchserve",
        help="plan with this server's measured figures (default torchserve)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.set_defaults(func=_run)


USER_ERRORS: tuple[type[Exception], ...] = (CapacityError,)


def _run(args: argparse.Namespace) -> int:
    results = args.results or Path("bench") / "results.json"  # of the working directory
    result = plan(
        Measured.from_results(results, args.model_server),
        args.events_per_s,
        cache_hit_ratio=args.cache_hit_ratio,
        utilization=args.utilization,
        lag_seconds=args.lag_seconds,
    )
    print(json.dumps(result.to_json()) if args.json else result.table())
    return 0
