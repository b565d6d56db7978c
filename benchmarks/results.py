"""The results of one `python -m benchmarks` run, typed: what suite.py fills and report.py
writes (as bench/results.json, and the costs `geoverdict capacity` plans with as
bench/costs.json).

results.json stays the flat object docs and scripts read (`pipeline_events_per_s`,
`consumer_cpu_s_per_1000_events`, ...); here it is sections, each a dataclass that writes and
reads its own keys, the headline figures derived from the measurements (never stored twice).
A new section (model servers compared, processing guarantees) is one more dataclass with
`to_json` / `from_json`, an optional field of BenchResults under its own key, and one line in
each of BenchResults' `to_json` and `from_json`: results written before it still load.

This module imports neither the service nor the stack: `python -m benchmarks --device` reads
and writes results where neither is installed.
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

from benchmarks.exceptions import BenchError
from geoverdict.capacity import MeasuredCosts, ServerCosts

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
    """A results file that cannot be read, or is not a `python -m benchmarks` result."""


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
    # CPU-ms of this process per image in the raw forward passes at the serving batch size:
    # the model's own cost, which no server can avoid (None in results before it was measured)
    model_cpu_ms_per_image: float | None = None
    # CPU-ms per image of the servers' shared core by stage, one torch thread: decode, model,
    # reply (None in results before they were measured)
    stages_cpu_ms_per_image: dict[str, float] | None = None

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
            "model_cpu_ms_per_image": self.model_cpu_ms_per_image,
            "stages_cpu_ms_per_image": self.stages_cpu_ms_per_image,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InProcess:
        """From results.json."""
        raw = {int(size): float(rate) for size, rate in data["raw_by_batch_size"].items()}
        if not raw:
            raise ValueError("raw_by_batch_size is empty")
        model_cpu = data.get("model_cpu_ms_per_image")
        stages = data.get("stages_cpu_ms_per_image")
        return cls(
            raw,
            float(data["handler_images_per_s"]),
            None if model_cpu is None else float(model_cpu),
            None if stages is None else {str(k): float(v) for k, v in stages.items()},
        )


@dataclass(frozen=True)
class ServingPoint:
    """One model-server measurement: a batch size (TorchServe: the model's server-side batch;
    Triton: images per request, merged further by its dynamic batcher) and requests in
    flight, and what they gave."""

    batch_size: int
    concurrency: int
    images_per_s: float
    mean_latency_ms: float
    server: str = "torchserve"
    cpu_ms_per_image: float | None = None  # the server's processes, all their cores

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
    def best(self) -> ServingPoint:
        """The fastest point at the pipeline's batch size."""
        at_batch = [p for p in self.points if p.batch_size == self.batch_size]
        return max(at_batch, key=lambda p: p.images_per_s)

    @property
    def images_per_s(self) -> float:
        """The best point at the pipeline's batch size."""
        return self.best.images_per_s

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
    broker_cpu_ms: float | None = None  # the Kafka broker's CPU-ms per event over the run

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


# When exactly_once costs more than this against at_least_once, at_least_once is the better
# default (issue 20): a tenth of the throughput, or 50 ms more at the 99th percentile.
GUARANTEE_THROUGHPUT_COST = 0.10
GUARANTEE_P99_COST_MS = 50.0


@dataclass(frozen=True)
class Guarantees:
    """at_least_once's runs of the same stream (the streams' runs are exactly_once's, the
    default): the same consumer and photos, Redis flushed first."""

    pipeline: StreamResult
    cached: StreamResult
    cached_paced: StreamResult

    def compare(self, exactly_once: Streams) -> dict[str, Any]:
        """Both side by side, what exactly_once costs, and the default those costs call for."""
        rows: dict[str, Any] = {}
        for name, (pipeline, cached, paced) in {
            "exactly_once": (exactly_once.pipeline, exactly_once.cached, exactly_once.cached_paced),
            "at_least_once": (self.pipeline, self.cached, self.cached_paced),
        }.items():
            rows[name] = {
                "pipeline_events_per_s": pipeline.events_per_s,
                "pipeline_p99_ms": pipeline.p99_ms,
                "cached_events_per_s": cached.events_per_s,
                "cached_paced_p50_ms": paced.p50_ms,
                "cached_paced_p99_ms": paced.p99_ms,
                "consumer_cpu_ms_cold": pipeline.cpu_s_per_1000,
                "consumer_cpu_ms_cached": cached.cpu_s_per_1000,
            }
        throughput_cost = max(
            1 - exactly_once.pipeline.events_per_s / max(self.pipeline.events_per_s, 1e-9),
            1 - exactly_once.cached.events_per_s / max(self.cached.events_per_s, 1e-9),
        )
        p99_cost = exactly_once.cached_paced.p99_ms - self.cached_paced.p99_ms
        rows["exactly_once_throughput_cost"] = round(throughput_cost, 3)
        rows["exactly_once_p99_cost_ms"] = round(p99_cost, 1)
        too_dear = throughput_cost > GUARANTEE_THROUGHPUT_COST or p99_cost > GUARANTEE_P99_COST_MS
        rows["default_called_for"] = "at_least_once" if too_dear else "exactly_once"
        return rows

    def to_json(self) -> dict[str, Any]:
        """Its runs, as results.json keeps them."""
        return {
            "pipeline": self.pipeline.to_json(),
            "cached": self.cached.to_json(),
            "cached_paced": self.cached_paced.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Guarantees:
        """From results.json's at_least_once section."""
        runs = ("pipeline", "cached", "cached_paced")
        return cls(*(_flat(StreamResult, data[run]) for run in runs))


@dataclass(frozen=True)
class TritonBench:
    """Triton beside TorchServe in the same run: through the service's Open Inference Protocol
    client (points: images per request x requests in flight), and the pipeline and the cached
    path with a consumer talking to it."""

    serving: Serving  # its points; batch_size: the images per request the pipeline sends
    pipeline: StreamResult
    cached: StreamResult

    def to_json(self) -> dict[str, Any]:
        """results.json's "triton" object."""
        return {
            "points": [p.to_json() for p in self.serving.points],
            "batch_size": self.serving.batch_size,
            "images_per_s": self.serving.images_per_s,
            "pipeline": self.pipeline.to_json(),
            "cached": self.cached.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TritonBench:
        """From results.json's "triton" object."""
        points = tuple(_flat(ServingPoint, p) for p in data["points"])
        return cls(
            Serving(points, int(data["batch_size"])),
            _flat(StreamResult, data["pipeline"]),
            _flat(StreamResult, data["cached"]),
        )


def outside_model(point: ServingPoint, model_cpu_ms: float | None) -> float | None:
    """A server's CPU-ms per image beyond the model's own (decode, replies, protocol, its
    frontend); None where either was not measured."""
    if point.cpu_ms_per_image is None or model_cpu_ms is None:
        return None
    return round(point.cpu_ms_per_image - model_cpu_ms, 2)


# The GPU box of issue 19's question, and the one GPU figure the project has: the demo model
# alone on an H200 (the developers' guide; measured before, not by this run).
GPU_BOX_CORES = 16
GPU_MODEL_IMAGES_PER_S = 29_600


def gpu_box_estimate(
    outside_ms: float, consumer_ms: float, broker_ms: float, decode_ms: float
) -> dict[str, float]:
    """Computed, not measured: events/s of a GPU_BOX_CORES-core box whose GPU runs the model,
    every core busy with the CPU work around it at this machine's cost per event (the model
    server's beyond the model, the consumer's, the broker's), with decode on the CPU and with
    decode on the GPU's JPEG decoder; never above what the GPU alone allows."""
    on_cpu = outside_ms + consumer_ms + broker_ms
    on_gpu = max(outside_ms - decode_ms, 0.0) + consumer_ms + broker_ms
    return {
        "cpu_ms_per_event_decode_on_cpu": round(on_cpu, 2),
        "cpu_ms_per_event_decode_on_gpu": round(on_gpu, 2),
        "events_per_s_decode_on_cpu": round(
            min(GPU_BOX_CORES * 1000 / on_cpu, GPU_MODEL_IMAGES_PER_S)
        ),
        "events_per_s_decode_on_gpu": round(
            min(GPU_BOX_CORES * 1000 / on_gpu, GPU_MODEL_IMAGES_PER_S)
        ),
    }


@dataclass(frozen=True)
class BenchResults:
    """One `python -m benchmarks` run."""

    machine: Machine
    model: str  # the archive's file name, backbone, input size and version (suite.describe_model)
    settings: dict[str, Any]  # the options, as suite.BenchOptions.to_json records them
    partitioning: dict[str, Any]  # partitioning.run's result
    in_process: InProcess
    serving: Serving
    streams: Streams
    seconds: float  # the whole run
    triton: TritonBench | None = None  # absent in results made before Triton was measured
    at_least_once: Guarantees | None = None  # absent in results made before issue 20

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
            **({"triton": self.triton.to_json(), "servers": self.servers()} if self.triton else {}),
            **({"gpu_box_estimate": self.gpu_box()} if self.gpu_box() else {}),
            **(
                {
                    "at_least_once": self.at_least_once.to_json(),
                    "guarantees": self.at_least_once.compare(self.streams),
                }
                if self.at_least_once
                else {}
            ),
        }

    def gpu_box(self) -> dict[str, Any]:
        """gpu_box_estimate for each model server, from this run's per-stage costs (empty
        where one was not measured)."""
        stages, model_cpu = (
            self.in_process.stages_cpu_ms_per_image,
            self.in_process.model_cpu_ms_per_image,
        )
        if stages is None or self.triton is None:
            return {}
        rows: dict[str, Any] = {}
        for name, (serving, pipeline) in {
            "torchserve": (self.serving, self.streams.pipeline),
            "triton": (self.triton.serving, self.triton.pipeline),
        }.items():
            outside = outside_model(serving.best, model_cpu)
            consumer, broker = pipeline.cpu_s_per_1000, pipeline.broker_cpu_ms
            if outside is None or consumer is None or broker is None:
                continue
            rows[name] = {
                "server_outside_model_ms": outside,
                "consumer_ms": consumer,
                "broker_ms": broker,
                "decode_ms": stages["decode"],
                **gpu_box_estimate(outside, consumer, broker, stages["decode"]),
            }
        return rows

    def servers(self) -> dict[str, Any]:
        """TorchServe and Triton side by side, and the issue's ratios (derived, for readers)."""
        if self.triton is None:
            return {}
        handler = self.in_process.handler_images_per_s
        model_cpu = self.in_process.model_cpu_ms_per_image
        runs = {
            "torchserve": (self.serving, self.streams.pipeline, self.streams.cached),
            "triton": (self.triton.serving, self.triton.pipeline, self.triton.cached),
        }
        rows: dict[str, Any] = {}
        for name, (serving, pipeline, cached) in runs.items():
            rows[name] = {
                "images_per_s": serving.images_per_s,
                "vs_handler": round(serving.images_per_s / handler, 3),
                "server_cpu_ms_per_image": serving.best.cpu_ms_per_image,
                "cpu_ms_outside_model_per_image": outside_model(serving.best, model_cpu),
                "pipeline_events_per_s": pipeline.events_per_s,
                "consumer_cpu_ms_cold": pipeline.cpu_s_per_1000,
                "consumer_cpu_ms_cached": cached.cpu_s_per_1000,
                "cached_events_per_s": cached.events_per_s,
            }
        ts_pipeline = self.streams.pipeline.events_per_s
        rows["triton_pipeline_vs_torchserve"] = round(
            self.triton.pipeline.events_per_s / max(ts_pipeline, 1e-9), 2
        )
        ts_out = outside_model(self.serving.best, model_cpu)
        tr_out = outside_model(self.triton.serving.best, model_cpu)
        rows["triton_outside_model_vs_torchserve"] = (
            round(tr_out / ts_out, 3) if ts_out and tr_out is not None else None
        )
        return rows

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
                triton=TritonBench.from_json(data["triton"]) if "triton" in data else None,
                at_least_once=(
                    Guarantees.from_json(data["at_least_once"]) if "at_least_once" in data else None
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsError(f"{source} is not a `python -m benchmarks` result: {exc!r}") from exc

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

    def costs(self) -> MeasuredCosts:
        """What `geoverdict capacity` plans with: each model server's costs in this run."""
        runs = {"torchserve": (self.serving, self.streams.pipeline, self.streams.cached)}
        if self.triton is not None:
            runs["triton"] = (self.triton.serving, self.triton.pipeline, self.triton.cached)
        servers = {
            name: ServerCosts(
                server_images_per_s=serving.images_per_s,
                consumer_cpu_ms_cold=pipeline.cpu_s_per_1000,
                consumer_cpu_ms_cached=cached.cpu_s_per_1000,
                pipeline_events_per_s=pipeline.events_per_s,
            )
            for name, (serving, pipeline, cached) in runs.items()
            # a run whose consumer CPU was not measured plans nothing with that server
            if pipeline.cpu_s_per_1000 is not None and cached.cpu_s_per_1000 is not None
        }
        return MeasuredCosts(self.machine.cores, self.machine.gpu, servers)

    def write(self, path: Path) -> Path:
        """Write as results.json; returns its path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path
