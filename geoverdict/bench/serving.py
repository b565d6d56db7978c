"""TorchServe directly, through the service's inference client: images/s and latency per request
against in-flight concurrency and server-side batch size."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Sequence

from geoverdict.bench.results import ServingPoint
from geoverdict_service.model_servers.tokens import TokenSource
from geoverdict_service.model_servers.torchserve import TorchServeClient
from geoverdict_stack.stack import Stack


def register(stack: Stack, archive_name: str, name: str, batch_size: int, delay_ms: int) -> None:
    """Register `archive_name` of the model store as `name` with this batch size (2 workers,
    as the archive's model-config asks)."""
    query = (
        f"url={archive_name}&model_name={name}&batch_size={batch_size}"
        f"&max_batch_delay={delay_ms}&initial_workers=2&synchronous=true"
    )
    request = urllib.request.Request(
        f"{stack.torchserve.url('management')}/models?{query}", method="POST",
        headers={"Authorization": f"Bearer {stack.torchserve_keys()['management']}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=300) as resp:
        json.loads(resp.read())


def unregister(stack: Stack, name: str) -> None:
    """Remove a model registered by `register`."""
    request = urllib.request.Request(
        f"{stack.torchserve.url('management')}/models/{name}", method="DELETE",
        headers={"Authorization": f"Bearer {stack.torchserve_keys()['management']}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as resp:
        resp.read()


def measure(
    stack: Stack, model: str, images: Sequence[bytes], batch_size: int, concurrency: int
) -> ServingPoint:
    """Send every image once with `concurrency` requests in flight."""
    latencies: list[float] = []
    client = TorchServeClient(
        stack.torchserve.url("inference"), model, TokenSource(key_file=stack.torchserve_key_file),
        concurrency=concurrency, observe=latencies.append,
    )  # fmt: skip
    try:
        client.predict_many(images[: max(concurrency, 8)])  # warm-up: connections, worker caches
        latencies.clear()
        started = time.perf_counter()
        client.predict_many(images)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    return ServingPoint(
        batch_size=batch_size,
        concurrency=concurrency,
        images_per_s=round(len(images) / seconds, 2),
        mean_latency_ms=round(statistics.fmean(latencies) * 1000, 1) if latencies else 0.0,
    )
