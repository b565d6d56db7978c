"""`geoverdict capacity`: how many partitions, consumers and model-server replicas an event
rate needs, and the lag threshold to scale consumers on, from the costs `make bench` measured
for the chosen model server (TorchServe, or Triton with `--model-server triton`), which it
writes to bench/costs.json (MeasuredCosts: this module reads and writes that file; the
benchmarks are not installed with the product).

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIN_PARTITIONS = 6  # docker-compose's default: room to grow on a small stream
SERVERS = ("torchserve", "triton")


class CapacityError(ValueError):
    """The measured costs cannot be read, or a plan's input is out of range."""


@dataclass(frozen=True)
class Measured:
    """One model server's measured figures that the plan needs, and where they come from."""

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
    def read(cls, path: Path, server: str = "torchserve") -> Measured:
        """The figures of `server` in a costs file (bench/costs.json or another run's)."""
        return MeasuredCosts.read(path).measured(server, source=str(path))


@dataclass(frozen=True)
class ServerCosts:
    """What one model server cost in a benchmark run: one section of bench/costs.json."""

    server_images_per_s: float
    consumer_cpu_ms_cold: float
    consumer_cpu_ms_cached: float
    pipeline_events_per_s: float


@dataclass(frozen=True)
class MeasuredCosts:
    """bench/costs.json: the machine a benchmark ran on, and each model server's costs there
    (`torchserve`, and `triton` when it was measured)."""

    cores: int
    gpu: str | None
    servers: Mapping[str, ServerCosts]

    def measured(self, server: str, source: str) -> Measured:
        """The figures a plan with `server` needs; `source` names them in the plan."""
        if server not in self.servers:
            raise CapacityError(f"{source} has no {server} figures; run `make bench`")
        return Measured(source, self.cores, self.gpu, **asdict(self.servers[server]), server=server)

    def to_json(self) -> dict[str, Any]:
        """The file's content: the machine, then one section per model server."""
        servers = {name: asdict(costs) for name, costs in self.servers.items()}
        return {"cores": self.cores, "gpu": self.gpu, **servers}

    @classmethod
    def from_json(cls, data: Any, source: str = "this") -> MeasuredCosts:
        """From the file's content; raises CapacityError naming what is wrong."""
        try:
            servers = {
                name: ServerCosts(**{k: float(v) for k, v in data[name].items()})
                for name in SERVERS
                if name in data
            }
            gpu = data["gpu"]
            costs = cls(int(data["cores"]), None if gpu is None else str(gpu), servers)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CapacityError(
                f"{source} is not a costs file written by `make bench`: {exc!r}"
            ) from exc
        if not servers:
            raise CapacityError(f"{source} is not a costs file written by `make bench`: no server")
        return costs

    @classmethod
    def read(cls, path: Path) -> MeasuredCosts:
        """Read a costs file."""
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise CapacityError(f"cannot read {path}: {exc.strerror}; run `make bench`") from exc
        except ValueError as exc:
            raise CapacityError(f"{path} is not JSON: {exc}; run `make bench`") from exc
        return cls.from_json(data, source=str(path))

    def write(self, path: Path) -> Path:
        """Write the costs file; returns its path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


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
        "--costs",
        type=Path,
        help="the costs a benchmark run measured (default bench/costs.json, from `make bench`)",
    )
    parser.add_argument("--utilization", type=float, default=0.7, help="of measured throughput")
    parser.add_argument(
        "--lag-seconds", type=float, default=10.0, help="backlog per consumer before scaling out"
    )
    parser.add_argument(
        "--model-server",
        choices=SERVERS,
        default="torchserve",
        help="plan with this server's measured figures (default torchserve)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.set_defaults(func=_run)


USER_ERRORS: tuple[type[Exception], ...] = (CapacityError,)


def _run(args: argparse.Namespace) -> int:
    costs = args.costs or Path("bench") / "costs.json"  # of the working directory
    result = plan(
        Measured.read(costs, args.model_server),
        args.events_per_s,
        cache_hit_ratio=args.cache_hit_ratio,
        utilization=args.utilization,
        lag_seconds=args.lag_seconds,
    )
    print(json.dumps(result.to_json()) if args.json else result.table())
    return 0
