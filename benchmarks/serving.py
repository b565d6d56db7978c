"""Each model server directly, through the service's own client: images/s, latency per request
and the server's CPU per image, against requests in flight and batch size."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Sequence

import psutil

from benchmarks.exceptions import BenchError
from benchmarks.results import ServingPoint
from geoverdict_service.model_servers.http import HttpModelServer
from geoverdict_service.model_servers.open_inference import OpenInferenceClient
from geoverdict_service.model_servers.tokens import TokenSource
from geoverdict_service.model_servers.torchserve import TorchServeClient
from geoverdict_stack.stack import Stack


def register(stack: Stack, archive_name: str, name: str, batch_size: int, delay_ms: int) -> None:
    """Register `archive_name` of the model store with TorchServe as `name` with this batch
    size (2 workers, as the archive's model-config asks)."""
    query = (
        f"url={archive_name}&model_name={name}&batch_size={batch_size}"
        f"&max_batch_delay={delay_ms}&initial_workers=2&synchronous=true"
    )
    request = urllib.request.Request(
        f"{stack.torchserve.url('management')}/models?{query}",
        method="POST",
        headers={"Authorization": f"Bearer {stack.torchserve_keys()['management']}"},
    )
    with urllib.request.urlopen(request, timeout=300) as resp:
        json.loads(resp.read())


def unregister(stack: Stack, name: str) -> None:
    """Remove a model registered by `register`."""
    request = urllib.request.Request(
        f"{stack.torchserve.url('management')}/models/{name}",
        method="DELETE",
        headers={"Authorization": f"Bearer {stack.torchserve_keys()['management']}"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        resp.read()


def client(
    stack: Stack,
    server: str,
    model: str,
    batch_size: int,
    concurrency: int,
    observe: list[float] | None = None,
) -> HttpModelServer:
    """The service's client of `server` on the stack: TorchServe (one image a request; its own
    batching is the model's registration) or Triton (`batch_size` images a request)."""
    seconds = observe.append if observe is not None else None
    if server == "torchserve":
        tokens = TokenSource(key_file=stack.torchserve_key_file)
        return TorchServeClient(
            stack.torchserve.url("inference"),
            model,
            tokens,
            concurrency=concurrency,
            observe=seconds,
        )
    tokens = TokenSource(key_file=stack.triton.inference_key_file)
    return OpenInferenceClient(
        stack.triton.url(),
        model,
        tokens,
        batch_size=batch_size,
        concurrency=concurrency,
        auth_header="authorization",
        observe=seconds,
    )


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU seconds the processes have used so far."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def measure(
    stack: Stack,
    server: str,
    model: str,
    images: Sequence[bytes],
    batch_size: int,
    concurrency: int,
) -> ServingPoint:
    """Send every image once with `concurrency` requests in flight; the server's processes'
    CPU is read before and after."""
    latencies: list[float] = []
    served = client(stack, server, model, batch_size, concurrency, latencies)
    try:
        served.predict_many(images[: max(concurrency * batch_size, 8)])  # warm-up
        latencies.clear()
        pids = stack.pids(server)
        if not pids:  # never a CPU figure of 0 for a server whose processes were not found
            raise BenchError(f"no running process of {server} to measure in {stack.config.run_dir}")
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        served.predict_many(images)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
    finally:
        served.close()
    return ServingPoint(
        batch_size=batch_size,
        concurrency=concurrency,
        images_per_s=round(len(images) / seconds, 2),
        mean_latency_ms=round(statistics.fmean(latencies) * 1000, 1) if latencies else 0.0,
        server=server,
        cpu_ms_per_image=round(cpu / len(images) * 1000, 2),
    )
