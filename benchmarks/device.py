"""`python -m benchmarks --device cuda`: the model, the handler and training on one GPU, with
neither Java nor Kafka. This module imports nothing of the service or the stack (tested), so it
runs where PyTorch, torchvision, timm and this project's packages are all there is.

1. model alone: forward passes (and the fp32 hierarchy) on tensors already on the device, in
   fp32, bf16 autocast and bf16 + channels_last, over a batch sweep; `raw_images_per_s` is the
   best point.
2. handler in process: the TorchServe handler's preprocess + inference + postprocess on the
   development photos, decoding on the device (`handler_images_per_s`, at `handler_batch_size`)
   and with Pillow (`handler_pillow_images_per_s`).
3. training: optimizer steps of EfficientNet-Lite0 and ResNet-50 at 224 px in bf16 and
   channels_last, the photos read by loader workers and decoded and augmented on the device
   (`train_lite0_images_per_s`, `train_resnet50_images_per_s`), and the same steps on random
   tensors already on the device (what the model alone allows); with `--compile`, also through
   torch.compile (minutes of compiling, so not by default).

Written to bench/results-gpu.json and the GPU section of docs/benchmarks.md. `--device cpu
--tiny` runs every path in seconds, for the tests; its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks.exceptions import BenchError
from benchmarks.inprocess import handler_throughput
from benchmarks.report import write_block
from benchmarks.results import Machine
from benchmarks.suite import load_photos
from benchmarks.training import DEMO_HEADS, timed_steps
from geoverdict_common.paths import model_store_dir, project_dir

BEGIN = "<!-- bench-gpu:begin -->"
END = "<!-- bench-gpu:end -->"
BACKBONES = {"lite0": "efficientnet_lite0", "resnet50": "resnet50"}


@dataclass(frozen=True)
class Precision:
    """How the model runs: dtype of autocast (None: fp32) and memory layout."""

    name: str
    autocast: torch.dtype | None
    channels_last: bool


PRECISIONS = (
    Precision("fp32", None, False),
    Precision("bf16", torch.bfloat16, False),
    Precision("bf16+channels_last", torch.bfloat16, True),
)


@dataclass(frozen=True)
class DeviceBenchOptions:
    """What to measure on the device, and how much (defaults: one H100 in under 5 minutes)."""

    device: str = "cuda"
    model: Path | None = None  # default: model_store/geoverdict.mar
    photos: Path | None = None  # default: the development photos in ../shared/data
    images: int = 1024  # photos per handler run
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # model sweep
    images_per_point: int = 4096  # forward passes per sweep point, at least 3 batches
    handler_batch_sizes: tuple[int, ...] = (16, 64, 128)
    handler_batch_size: int = 64  # the one reported (TorchServe's GPU batch size)
    train_batch_size: int = 128
    train_steps: int = 30
    train_size: int = 224
    train_workers: int = 6  # loader workers; they only read files
    compile: bool = False
    out: Path = field(default_factory=lambda: project_dir() / "bench")
    docs: Path | None = field(default_factory=lambda: project_dir() / "docs" / "benchmarks.md")

    @classmethod
    def tiny(cls, **overrides: Any) -> DeviceBenchOptions:
        """Every path in seconds on a CPU (the tests); numbers that mean nothing."""
        small: dict[str, Any] = dict(
            images=8,
            batch_sizes=(2, 4),
            images_per_point=8,
            handler_batch_sizes=(4,),
            handler_batch_size=4,
            train_batch_size=4,
            train_steps=2,
            train_size=64,
            train_workers=0,
            docs=None,
        )
        return cls(**{**small, **overrides})

    def to_json(self) -> dict[str, Any]:
        """Settings as results-gpu.json records them."""
        data = dataclasses.asdict(self)
        for key in ("model", "photos", "out", "docs"):
            data[key] = None if data[key] is None else Path(data[key]).name
        return data


def torch_device(name: str) -> torch.device:
    """The device to measure; a missing GPU is an error, not a CPU run."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: torch sees no CUDA device here")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_sweep(
    archive: Path, device: torch.device, options: DeviceBenchOptions
) -> list[dict[str, Any]]:
    """Images/s of the archive's model (forward + fp32 hierarchy) per precision and batch."""
    from geoverdict_training.serving.bundle import read_bundle  # noqa: PLC0415

    bundle = read_bundle(archive)
    size = bundle.input_size
    points = []
    predictors = {
        layout: bundle.predictor(device, channels_last=layout) for layout in (False, True)
    }
    for precision in PRECISIONS:
        predictor = predictors[precision.channels_last]
        for batch_size in options.batch_sizes:
            x = torch.randn(batch_size, 3, size, size, device=device)  # (B, 3, S, S)
            if precision.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            repeats = max(3, math.ceil(options.images_per_point / batch_size))
            with torch.inference_mode():
                for _ in range(2):  # warm-up: kernels, cuDNN's choice for this shape
                    predictor.from_logits(predictor.logits(x, precision.autocast))
                _synchronize(device)
                started = time.perf_counter()
                for _ in range(repeats):
                    predictor.from_logits(predictor.logits(x, precision.autocast))
                _synchronize(device)
            seconds = time.perf_counter() - started
            points.append(
                {
                    "precision": precision.name,
                    "batch_size": batch_size,
                    "images_per_s": round(repeats * batch_size / seconds, 1),
                }
            )
            print(f"model alone: {points[-1]}", flush=True)
    return points


def _encoded_batches(
    photos: Sequence[bytes], heads: Mapping[str, int], options: DeviceBenchOptions
) -> Iterator[Any]:
    """Endless encoded batches of the photos with random labels per head, read by loader
    workers."""
    from geoverdict_training.data.datasets import collate_encoded  # noqa: PLC0415

    rng = np.random.default_rng(0)
    samples = [
        (data, {name: torch.tensor(int(rng.integers(0, n))) for name, n in heads.items()})
        for data in photos
    ]
    loader: DataLoader[Any] = DataLoader(
        samples,  # type: ignore[arg-type]  # a list is a map-style dataset
        batch_size=options.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=options.train_workers,
        collate_fn=collate_encoded,
        persistent_workers=options.train_workers > 0,
    )
    while True:
        yield from loader


def train_throughput(
    backbone: str, photos: Sequence[bytes], device: torch.device, options: DeviceBenchOptions
) -> dict[str, Any]:
    """Optimizer steps per second of one backbone: with photos decoded on the device, and on
    random tensors; bf16 and channels_last on a GPU."""
    from geoverdict_training.data.datasets import Batch  # noqa: PLC0415
    from geoverdict_training.images.transforms import InputSpec  # noqa: PLC0415
    from geoverdict_training.models.backbones import backbone_info  # noqa: PLC0415
    from geoverdict_training.models.geo_model import GeoModel, ModelSpec  # noqa: PLC0415
    from geoverdict_training.train.device_batches import DeviceBatches  # noqa: PLC0415
    from geoverdict_training.train.step import Stepper, grad_scaler  # noqa: PLC0415

    gpu = device.type == "cuda"
    autocast = torch.bfloat16 if gpu else None
    size, batch_size = options.train_size, options.train_batch_size
    spec = ModelSpec(backbone, DEMO_HEADS)
    info = backbone_info(backbone)
    decode = DeviceBatches(device, InputSpec(size, size * 8 // 7, info.mean, info.std))

    def stepper(compiled: bool) -> Stepper:
        """The trainer's step (train/step.py) on a fresh model."""
        torch.manual_seed(0)
        model = GeoModel(spec, pretrained=False).to(device).train()
        if gpu:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        net = torch.compile(model) if compiled else model
        return Stepper(
            net,  # type: ignore[arg-type]  # torch.compile's wrapper is typed as a function
            optimizer,
            grad_scaler(device, autocast),
            device,
            autocast=autocast,
            channels_last=gpu,
        )

    def random_batches() -> Iterator[Batch]:
        labels = {
            name: torch.randint(0, n, (batch_size,), device=device)
            for name, n in spec.heads.items()
        }
        x = torch.randn(batch_size, 3, size, size, device=device)  # (B, 3, S, S)
        return itertools.repeat(Batch(x, labels, {}))

    def photo_batches() -> Iterator[Batch]:
        return (decode(encoded) for encoded in _encoded_batches(photos, spec.heads, options))

    result: dict[str, Any] = {
        "backbone": backbone,
        "batch_size": batch_size,
        "input_size": size,
        "steps": options.train_steps,
        "loader_workers": options.train_workers,
        "precision": "bf16" if gpu else "fp32",
        "channels_last": gpu,
        "decode": "device",
    }
    runs = [("", False)] + ([("compiled_", True)] if options.compile else [])
    for prefix, compiled in runs:
        step = stepper(compiled)  # both sources train the same model
        for source, batches in (("photos", photo_batches), ("random_tensors", random_batches)):
            started = time.perf_counter()
            rate = timed_steps(step, batches(), options.train_steps)
            result[f"{prefix}{source}_images_per_s"] = round(rate, 1)
            result[f"{prefix}{source}_seconds"] = round(time.perf_counter() - started, 1)
    print(f"training: {result}", flush=True)
    return result


def run(options: DeviceBenchOptions) -> dict[str, Any]:
    """Every measurement on `options.device`; returns results-gpu.json's content (written)."""
    started = time.monotonic()
    device = torch_device(options.device)
    archive = (options.model or model_store_dir() / "geoverdict.mar").resolve()
    if not archive.is_file():
        raise BenchError(f"model archive {archive} not found (give --model)")
    photos = load_photos(options.photos, options.images)
    gpu = device.type == "cuda"
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if gpu else "cpu",
        "torch_device": str(device),
        "machine": Machine.here().to_json(),
        "model": archive.name,
        "settings": options.to_json(),
    }
    print(f"benchmarking {archive.name} on {results['device']}", flush=True)

    raw = model_sweep(archive, device, options)
    best = max(raw, key=lambda point: point["images_per_s"])
    results.update(raw=raw, raw_images_per_s=best["images_per_s"], raw_best=best)

    gpu_id = device.index if gpu else None
    handler = {
        size: handler_throughput(archive, photos, size, gpu_id, decode="device")
        for size in sorted({*options.handler_batch_sizes, options.handler_batch_size})
    }
    print(f"handler, device decode: {handler} images/s by batch size", flush=True)
    pillow = handler_throughput(archive, photos, options.handler_batch_size, gpu_id, "pillow")
    print(f"handler, Pillow decode: {pillow} images/s", flush=True)
    results.update(
        handler_by_batch_size=handler,
        handler_batch_size=options.handler_batch_size,
        handler_images_per_s=handler[options.handler_batch_size],
        handler_pillow_images_per_s=pillow,
        handler_decode="device (JPEG), Pillow for the rest",
    )

    train = {
        key: train_throughput(name, photos, device, options) for key, name in BACKBONES.items()
    }
    results["train"] = list(train.values())
    for key, result in train.items():
        results[f"train_{key}_images_per_s"] = result["photos_images_per_s"]
    results["seconds"] = round(time.monotonic() - started, 1)
    write(results, options.out, options.docs)
    return results


def results_name(results: dict[str, Any]) -> str:
    """results-gpu.json for a GPU run; results-device-cpu.json for a CPU one (tests)."""
    return (
        "results-gpu.json"
        if results["torch_device"].startswith("cuda")
        else ("results-device-cpu.json")
    )


def table(results: dict[str, Any]) -> str:
    """The GPU section's markdown: what ran, the headline numbers, the sweeps."""
    m, best = results["machine"], results["raw_best"]
    lines = [
        f"Device: {results['device']}; {m['cores']} CPU cores, {m['memory_gb']} GB; torch "
        f"{m['torch']}. Model: `{results['model']}`. Whole run: {results['seconds']:.0f} s.",
        "",
        "| stage | images/s | settings |",
        "|---|---|---|",
        f"| model alone (best of the sweep) | {results['raw_images_per_s']:,.0f} | "
        f"{best['precision']}, batch {best['batch_size']} |",
        f"| handler in process, GPU decode | {results['handler_images_per_s']:,.0f} | "
        f"batch {results['handler_batch_size']} |",
        f"| handler in process, Pillow decode | {results['handler_pillow_images_per_s']:,.0f} | "
        f"batch {results['handler_batch_size']} |",
    ]
    for train in results["train"]:
        lines.append(
            f"| training {train['backbone']}, {train['input_size']} px, photos decoded on the "
            f"device (random tensors) | {train['photos_images_per_s']:,.0f} "
            f"({train['random_tensors_images_per_s']:,.0f}) | batch {train['batch_size']}, "
            f"{train['precision']}, channels_last {train['channels_last']}, "
            f"{train['loader_workers']} loader workers |"
        )
    sweep: dict[str, dict[int, float]] = {}
    for point in results["raw"]:
        sweep.setdefault(point["precision"], {})[point["batch_size"]] = point["images_per_s"]
    sizes = sorted({point["batch_size"] for point in results["raw"]})
    lines += [
        "",
        "Model alone, images/s by batch size:",
        "",
        "| precision | " + " | ".join(str(size) for size in sizes) + " |",
        "|---|" + "---|" * len(sizes),
        *[
            f"| {name} | " + " | ".join(f"{row.get(s, 0):,.0f}" for s in sizes) + " |"
            for name, row in sweep.items()
        ],
        "",
        "Handler, GPU decode, images/s by batch size: "
        + ", ".join(f"{k}: {v:,.0f}" for k, v in results["handler_by_batch_size"].items()),
    ]
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path, docs: Path | None) -> None:
    """results-gpu.json into `out`; the table into `docs` between the GPU markers."""
    out.mkdir(parents=True, exist_ok=True)
    (out / results_name(results)).write_text(json.dumps(results, indent=2) + "\n")
    if docs is not None:
        write_block(docs, BEGIN, END, table(results))
