"""The model in this process: `raw` (forward passes on tensors already decoded, the limit of the
whole system) and `handler` (the TorchServe handler's own decode + model + reply, without
TorchServe), on the same images and batch sizes as the served benchmarks."""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from PIL import Image


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _decoded(archive: Path, images: Sequence[bytes]) -> tuple[Any, list[torch.Tensor]]:
    """The archive's predictor on the CPU and the images as its input tensors (3, H, W)."""
    from geoverdict_training.serving.bundle import read_bundle  # noqa: PLC0415

    bundle = read_bundle(archive)
    transform = bundle.transform()
    tensors = []
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            tensors.append(transform(image.convert("RGB")))
    return bundle.predictor("cpu"), tensors


def raw_throughput(
    archive: Path, images: Sequence[bytes], batch_sizes: Sequence[int]
) -> dict[int, float]:
    """Images/s of the model alone (no decoding, no replies) at each batch size."""
    predictor, tensors = _decoded(archive, images)
    results: dict[int, float] = {}
    with torch.inference_mode():
        for size in batch_sizes:
            batches = [torch.stack(list(b)) for b in _batches(tensors, size)]  # (B, 3, H, W)
            predictor(batches[0])  # warm-up (allocator, kernels)
            started = time.perf_counter()
            for batch in batches:
                predictor(batch)
            results[size] = round(len(tensors) / (time.perf_counter() - started), 2)
    return results


def model_cpu_ms_per_image(
    archive: Path, images: Sequence[bytes], batch_size: int, threads: int = 1
) -> float:
    """CPU-ms of the model's forward passes per image on decoded tensors, with `threads`
    torch threads as each server worker runs it: what no server can avoid spending."""
    predictor, tensors = _decoded(archive, images)
    batches = [torch.stack(list(b)) for b in _batches(tensors, batch_size)]  # (B, 3, H, W)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            predictor(batches[0])  # warm-up
            started = time.process_time()
            for batch in batches:
                predictor(batch)
            return round((time.process_time() - started) / len(tensors) * 1000, 2)
    finally:
        torch.set_num_threads(previous)


def stage_cpu_ms_per_image(
    archive: Path, images: Sequence[bytes], batch_size: int, threads: int = 1
) -> dict[str, float]:
    """CPU-ms per image of each stage of the servers' shared core (the Responder), with
    `threads` torch threads: `decode` (header checks, Pillow decode, resize and crop), `model`
    (the forward pass, hierarchy and calibration) and `reply` (the reply's JSON-ready dict).
    Decode is what a GPU's JPEG decoder can take over; the rest of the CPU around the model is
    the server's."""
    from geoverdict_training.serving.responder import Responder  # noqa: PLC0415

    responder = Responder.from_archive(archive, torch.device("cpu"))
    spent = {"decode": 0.0, "model": 0.0, "reply": 0.0}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            responder.answer(list(images[:batch_size]))  # warm-up
            for batch in _batches(images, batch_size):
                started = time.process_time()
                items = responder.prepare(list(batch))
                decoded = time.process_time()
                items = responder.infer(items)
                inferred = time.process_time()
                responder.replies(items)
                spent["decode"] += decoded - started
                spent["model"] += inferred - decoded
                spent["reply"] += time.process_time() - inferred
    finally:
        torch.set_num_threads(previous)
    return {stage: round(seconds / len(images) * 1000, 2) for stage, seconds in spent.items()}


class _Context(SimpleNamespace):
    """What the handler reads from TorchServe's context, for use without TorchServe."""


def handler_throughput(
    archive: Path,
    images: Sequence[bytes],
    batch_size: int,
    gpu_id: int | None = None,
    decode: str = "auto",
) -> float:
    """Images/s of the handler's preprocess + inference + postprocess, in this process; on GPU
    `gpu_id` when given, decoding as the handler setting `decode` says."""
    from geoverdict_training.serving.handler import GeoverdictHandler  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="geoverdict-bench-") as tmp:
        with zipfile.ZipFile(archive) as mar:
            mar.extractall(tmp)
        context = _Context(
            system_properties={"model_dir": tmp, "gpu_id": gpu_id},
            model_yaml_config={"maxWorkers": 1, "handler": {"decode": decode}},
            manifest={},
        )
        handler = GeoverdictHandler()
        handler.initialize(context)
        requests = [{"body": data} for data in images]
        batches = _batches(requests, batch_size)

        def run(batch: Sequence[dict[str, bytes]]) -> list[dict[str, Any]]:
            return handler.postprocess(handler.inference(handler.preprocess(list(batch))))

        with torch.inference_mode():
            run(batches[0])  # warm-up
            started = time.perf_counter()
            for batch in batches:
                run(batch)  # replies are Python objects: the device's work is done
            return round(len(requests) / (time.perf_counter() - started), 2)
