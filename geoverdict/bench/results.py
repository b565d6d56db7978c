"""The results of one `geoverdict bench` run, typed: what suite.py fills, report.py writes (as
bench/results.json) and `geoverdict capacity` reads back.

results.json stays the flat object docs and scripts read (`pipeline_events_per_s`,
`consumer_cpu_s_per_1000_events`, ...); here it is sections, each a dataclass that writes and
reads its own keys, the headline figures derived from the measurements (never stored twice).
A new section (model servers compared, processing guarantees) is one more dataclass with
`to_json` / `from_json`, an optional field of BenchResults under its own key, and one line in
each of BenchResults' `to_json` and `from_json`: results written before it still load.

This module imports neither the service nor the stack: `geoverdict capacity` reads results
where neither is installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from geoverdict.bench.exceptions import BenchError

_T = TypeVar("_T")

# How a field's annotation (a string: `from __future__ import annotations`) reads a JSON value.
_READERS: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "int | None": lambda v: None if v is None else int(v),
    "float | None": lambda v: None if v is None else float(v),
    "str | None": lambda v: None if v is None else str(v),
}


class ResultsError(BenchError):
    """A results file that cannot be read, or is not a `geoverdict bench` result."""


def _flat(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """A dataclass of plain fields from its JSON object; a missing key or a value of the wrong
    kind raises KeyError, TypeError or ValueError."""
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data and f.default is not dataclasses.MISSING:
            continue
        read = _READERS.get(str(f.type), lambda v: v)
        values[f.name] = read(data[f.name])
    return cls(**values)


@dataclass(frozen=True)
class Machine:
    """What ran the benchmark."""

    cpu: str
    cores: int
    memory_gb: float
    python: str
    torch: str
    torch_threads: int
    gpu: str | None

    @classmethod
    def here(cls) -> Machine:
        """This machine."""
        import torch  # noqa: PLC0415

        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # no psutil on GPU boxes
        return cls(
            cpu=platform.processor() or platform.machine(),
            cores=os.cpu_count() or 1,
            memory_gb=round(memory / 2**30, 1),
            python=platform.python_version(),
            torch=torch.__version__,
            torch_threads=torch.get_num_threads(),
            gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class InProcess:
    """The model in this process: forward passes on decoded tensors by batch size (raw), and
    the TorchServe handler's decode + model (handler)."""

    raw_by_batch_size: dict[int, float]  # images/s
    handler_images_per_s: float

    @property
    def raw_best_batch_size(self) -> int:
        """The batch size of the fastest raw point."""
        return max(self.raw_by_batch_size, key=lambda size: self.raw_by_batch_size[size])

    @property
    def raw_images_per_s(self) -> float:
        """The fastest raw point: what the model alone allows."""
        return self.raw_by_batch_size[self.raw_best_batch_size]

    def to_json(self) -> dict[str, Any]:
        """Its keys of results.json."""
        return {
            "raw_by_batch_size": dict(self.raw_by_batch_size),
            "raw_images_per_s": self.raw_images_per_s,
            "raw_best_batch_size": self.raw_best_batch_size,
            "handler_images_per_s": self.handler_images_per_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InProcess:
        """From results.json."""
        raw = {int(size): float(rate) for size, rate in data["raw_by_batch_size"].items()}
        if not raw:
            raise ValueError("raw_by_batch_size is empty")
        return cls(raw, float(data["handler_images_per_s"]))


@dataclass(frozen=True)
class ServingPoint:
    """One TorchServe measurement: a batch size and a concurrency, and what they gave."""

    batch_size: int
    concurrency: int
    images_per_s: float
    mean_latency_ms: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class Serving:
    """TorchServe through the service's inference client, a point per batch size and number of
    requests in flight; `batch_size` is the server-side batch size the pipeline runs at."""

    points: tuple[ServingPoint, ...]
    batch_size: int

    @property
    def images_per_s(self) -> float:
        """The best point at the pipeline's batch size."""
        return max(p.images_per_s for p in self.points if p.batch_size == self.batch_size)

    def to_json(self) -> dict[str, Any]:
        """Its keys of results.json."""
        return {
            "torchserve_points": [p.to_json() for p in self.points],
            "torchserve_images_per_s": self.images_per_s,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Serving:
        """From results.json."""
        points = tuple(_flat(ServingPoint, p) for p in data["torchserve_points"])
        serving = cls(points, int(data["batch_size"]))
        serving.images_per_s  # noqa: B018  # raises ValueError without a point at batch_size
        return serving


@dataclass(frozen=True)
class StreamResult:
    """One stream run: throughput, latency percentiles, and the consumer's resource use."""

    label: str
    events: int
    verdicts: int
    seconds: float
    events_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rate: str  # "burst" or the paced publishing rate
    cpu_s_per_1000: float | None = None
    rss_mb: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class Streams:
    """Kafka in, verdicts out: the pipeline (cold cache), the same photos again (cached, as a
    burst and paced below capacity) and the naive consumer."""

    pipeline: StreamResult
    cached: StreamResult
    cached_paced: StreamResult
    naive: StreamResult

    @property
    def pipeline_vs_naive(self) -> float:
        """How many times the naive consumer's throughput the pipeline reaches."""
        return round(self.pipeline.events_per_s / max(self.naive.events_per_s, 1e-9), 2)

    def to_json(self) -> dict[str, Any]:
        """Its keys of results.json: the four runs and their headline figures."""
        p = self.pipeline
        return {
            "pipeline": p.to_json(),
            "cached": self.cached.to_json(),
            "cached_paced": self.cached_paced.to_json(),
            "naive": self.naive.to_json(),
            "pipeline_events_per_s": p.events_per_s,
            "pipeline_p50_ms": p.p50_ms,
            "pipeline_p95_ms": p.p95_ms,
            "pipeline_p99_ms": p.p99_ms,
            "cached_events_per_s": self.cached.events_per_s,
            "cached_p99_ms": self.cached_paced.p99_ms,  # a burst only measures its own queue
            "naive_events_per_s": self.naive.events_per_s,
            "pipeline_vs_naive": self.pipeline_vs_naive,
            "consumer_cpu_s_per_1000_events": p.cpu_s_per_1000,
            "consumer_cached_cpu_s_per_1000_events": self.cached.cpu_s_per_1000,
            "consumer_rss_mb": p.rss_mb,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Streams:
        """From results.json."""
        runs = ("pipeline", "cached", "cached_paced", "naive")
        return cls(*(_flat(StreamResult, data[run]) for run in runs))


@dataclass(frozen=True)
class BenchResults:
    """One `geoverdict bench` run."""

    machine: Machine
    model: str  # the archive's file name
    settings: dict[str, Any]  # the options, as suite.BenchOptions.to_json records them
    partitioning: dict[str, Any]  # partitioning.run's result
    in_process: InProcess
    serving: Serving
    streams: Streams
    seconds: float  # the whole run

    @property
    def efficiency(self) -> float:
        """Pipeline events/s over what the model alone allows."""
        return round(self.streams.pipeline.events_per_s / self.in_process.raw_images_per_s, 3)

    def to_json(self) -> dict[str, Any]:
        """results.json's content."""
        return {
            "machine": self.machine.to_json(),
            "model": self.model,
            "settings": self.settings,
            "partitioning": self.partitioning,
            **self.in_process.to_json(),
            **self.serving.to_json(),
            **self.streams.to_json(),
            "efficiency": self.efficiency,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "this") -> BenchResults:
        """From results.json's content; raises ResultsError naming what is missing or wrong."""
        try:
            return cls(
                machine=_flat(Machine, data["machine"]),
                model=str(data["model"]),
                settings=dict(data["settings"]),
                partitioning=dict(data["partitioning"]),
                in_process=InProcess.from_json(data),
                serving=Serving.from_json(data),
                streams=Streams.from_json(data),
                seconds=float(data["seconds"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsError(f"{source} is not a `geoverdict bench` result: {exc!r}") from exc

    @classmethod
    def read(cls, path: Path) -> BenchResults:
        """Read a results.json."""
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ResultsError(f"cannot read {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ResultsError(f"{path} is not JSON: {exc}") from exc
        return cls.from_json(data, source=str(path))

    def write(self, path: Path) -> Path:
        """Write as results.json; returns its path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path
