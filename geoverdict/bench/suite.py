"""`geoverdict bench`: every benchmark in one run on one machine, written to bench/results.json,
docs/benchmarks.md and a plot.

raw → handler → torchserve → pipeline → cached → naive: each stage adds one layer around the
model, so their ratios show where throughput goes. Partitioning speed is measured too.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geoverdict.bench.exceptions import BenchError
from geoverdict_common.paths import project_dir, runs_dir, shared_data_dir

MODEL_NAME = "geoverdict"


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how much."""

    model: Path | None = None  # default: the newest archive in model_store/
    photos: Path | None = None  # default: the development photos in ../shared/data
    events: int = 600
    batch_size: int = 4  # TorchServe's server-side batch size for torchserve/pipeline
    batch_sizes: tuple[int, ...] = (1, 4, 8, 16)
    concurrencies: tuple[int, ...] = (1, 8, 16, 32, 48)
    consumer_concurrency: int = 32
    naive_events: int = 150
    cached_repeats: int = 5
    cached_paced_share: float = 0.5  # paced latency run at this share of the burst throughput
    partition_points: int = 5_000_000
    out: Path = field(default_factory=lambda: project_dir() / "bench")
    docs: Path | None = field(default_factory=lambda: project_dir() / "docs" / "benchmarks.md")

    def to_json(self) -> dict[str, Any]:
        """Settings as recorded in results.json."""
        data = asdict(self)
        for key in ("model", "photos", "out", "docs"):
            data[key] = None if data[key] is None else _portable(data[key])
        return data


def _portable(path: Path) -> str:
    """A path as results.json records it: relative to the working directory when inside it
    (the results travel with the repository; another machine's folders mean nothing there)."""
    try:
        return str(path.resolve().relative_to(project_dir().resolve()))
    except ValueError:
        return path.name


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    import torch  # noqa: PLC0415

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # no psutil on GPU boxes
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def load_photos(folder: Path | None, count: int) -> list[bytes]:
    """`count` photos (cycled if the folder has fewer), as the bytes a producer would send."""
    from geoverdict.demo.photos import demo_photos  # noqa: PLC0415

    if folder is None:
        dev = shared_data_dir() / "im2gps3k-dev" / "images"
        photos = (
            [p.read_bytes() for p in sorted(dev.glob("*.jpg"))[:count]]
            if dev.is_dir()
            else [p.data for p in demo_photos(None, count)]
        )
    else:
        photos = [p.data for p in demo_photos(folder, count)]
    if not photos:
        raise BenchError("no photos to benchmark with (give --photos DIR)")
    return [photos[i % len(photos)] for i in range(count)]


def run(options: BenchOptions) -> dict[str, Any]:
    """Run every stage; returns results.json's content (also written to disk)."""
    from geoverdict.bench import inprocess, partitioning, report, serving, streams  # noqa: PLC0415
    from geoverdict.demo.archive import find_archive  # noqa: PLC0415
    from geoverdict_service.collector import VerdictCollector  # noqa: PLC0415
    from geoverdict_service.kafka_clients import make_producer  # noqa: PLC0415
    from geoverdict_service.settings import load_kafka_settings  # noqa: PLC0415
    from geoverdict_stack.stack import Stack, StackConfig, sigterm_as_exit  # noqa: PLC0415

    archive = find_archive(options.model)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "model": archive.name,
                               "settings": options.to_json()}  # fmt: skip
    print(f"benchmarking {archive.name} on {results['machine']['cores']} cores", flush=True)

    part = partitioning.run(n=options.partition_points)
    results["partitioning"] = part
    print(partitioning.report(part), flush=True)

    photos = load_photos(options.photos, options.events)
    raw = inprocess.raw_throughput(archive, photos, options.batch_sizes)
    best_batch = max(raw, key=lambda b: raw[b])
    results["raw_by_batch_size"] = raw
    results["raw_images_per_s"] = raw[best_batch]
    results["raw_best_batch_size"] = best_batch
    print(f"raw: {raw} images/s by batch size", flush=True)
    results["handler_images_per_s"] = inprocess.handler_throughput(
        archive, photos, options.batch_size
    )
    print(f"handler: {results['handler_images_per_s']} images/s", flush=True)

    config = StackConfig.with_free_ports(
        run_dir=runs_dir() / "bench", model_store=archive.parent,
        models=(f"{MODEL_NAME}={archive.name}",), enable_model_api=True,
    )  # fmt: skip
    with sigterm_as_exit(), Stack(config) as stack:
        points = []
        for concurrency in options.concurrencies:
            points.append(
                serving.measure(stack, MODEL_NAME, photos, options.batch_size, concurrency)
            )
            print(f"torchserve {points[-1]}", flush=True)
        for size in options.batch_sizes:
            if size == options.batch_size:
                continue
            name = f"{MODEL_NAME}-b{size}"
            serving.register(stack, archive.name, name, size, delay_ms=20)
            try:
                points.append(serving.measure(stack, name, photos, size, max(4 * size, 8)))
            finally:
                serving.unregister(stack, name)
            print(f"torchserve {points[-1]}", flush=True)
        results["torchserve_points"] = [p.to_json() for p in points]
        at_batch = [p for p in points if p.batch_size == options.batch_size]
        results["torchserve_images_per_s"] = max(p.images_per_s for p in at_batch)

        kafka = load_kafka_settings(bootstrap_servers=stack.kafka_bootstrap)
        producer = make_producer(kafka, acks="all", linger_ms=5)
        topics = streams.Topics(stack)
        collector = VerdictCollector.from_settings(kafka, topics.verdicts)
        consumer = streams.consumer_process(
            stack, topics, MODEL_NAME,
            {"GEOVERDICT_TORCHSERVE_CONCURRENCY": str(options.consumer_concurrency)},
        )  # fmt: skip
        try:
            warm = streams.measure("warm-up", producer, collector, topics.input, photos[-8:])
            print(f"consumer warm-up: {warm.verdicts} verdicts", flush=True)
            pipeline = streams.measure(
                "pipeline",
                producer,
                collector,
                topics.input,
                photos[:-8],
                consumer_pid=consumer.pid,
            )
            print(f"pipeline: {pipeline}", flush=True)
            cached_images = list(photos) * options.cached_repeats
            cached = streams.measure(
                "cached",
                producer,
                collector,
                topics.input,
                cached_images,
                consumer_pid=consumer.pid,
            )
            print(f"cached: {cached}", flush=True)
            # Latency of a steady stream below capacity (a burst only measures its own queue).
            rate = max(10.0, cached.events_per_s * options.cached_paced_share)
            paced_n = min(len(cached_images), int(rate * 3))
            cached_paced = streams.measure(
                "cached, paced", producer, collector, topics.input, cached_images[:paced_n],
                rate=rate,
            )  # fmt: skip
            print(f"cached, paced: {cached_paced}", flush=True)
        finally:
            streams.stop(consumer)
            collector.close()

        naive_topics = streams.Topics(stack)
        naive_collector = VerdictCollector.from_settings(kafka, naive_topics.verdicts)
        naive_photos = photos[: options.naive_events]
        naive = streams.naive_process(stack, naive_topics, MODEL_NAME, len(naive_photos))
        try:
            naive_result = streams.measure(
                "naive", producer, naive_collector, naive_topics.input, naive_photos
            )
            print(f"naive: {naive_result}", flush=True)
        finally:
            streams.stop(naive)
            naive_collector.close()
            producer.close()

    results["pipeline"] = pipeline.to_json()
    results["cached"] = cached.to_json()
    results["cached_paced"] = cached_paced.to_json()
    results["naive"] = naive_result.to_json()
    results["pipeline_events_per_s"] = pipeline.events_per_s
    results["pipeline_p50_ms"] = pipeline.p50_ms
    results["pipeline_p95_ms"] = pipeline.p95_ms
    results["pipeline_p99_ms"] = pipeline.p99_ms
    results["cached_events_per_s"] = cached.events_per_s
    results["cached_p99_ms"] = cached_paced.p99_ms
    results["naive_events_per_s"] = naive_result.events_per_s
    results["efficiency"] = round(pipeline.events_per_s / results["raw_images_per_s"], 3)
    results["pipeline_vs_naive"] = round(
        pipeline.events_per_s / max(naive_result.events_per_s, 1e-9), 2
    )
    results["consumer_cpu_s_per_1000_events"] = pipeline.cpu_s_per_1000
    results["consumer_cached_cpu_s_per_1000_events"] = cached.cpu_s_per_1000
    results["consumer_rss_mb"] = pipeline.rss_mb
    results["batch_size"] = options.batch_size
    results["seconds"] = round(time.monotonic() - started, 1)
    report.write(results, options.out, options.docs)
    return results
