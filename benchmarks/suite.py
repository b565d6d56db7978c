"""`python -m benchmarks`: every benchmark in one run on one machine, written to bench/results.json,
docs/benchmarks.md and a plot.

raw → handler → torchserve → pipeline → cached → naive: each stage adds one layer around the
model, so their ratios show where throughput goes. Triton is measured beside TorchServe in the
same run (through-server points with each server's CPU per image, the pipeline and the cached
path with a consumer talking to it). Partitioning speed is measured too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.exceptions import BenchError
from benchmarks.results import (
    BenchResults,
    Guarantees,
    InProcess,
    Machine,
    Serving,
    StreamResult,
    Streams,
    TritonBench,
)
from geoverdict_common.paths import project_dir, runs_dir, shared_data_dir

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from geoverdict_service.settings import KafkaSettings
    from geoverdict_stack.stack import Stack

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
    # Triton: images per request for the pipeline, requests in flight to sweep, other batches
    triton_batch_size: int = 8
    triton_concurrencies: tuple[int, ...] = (1, 2, 4, 8)
    triton_batch_sizes: tuple[int, ...] = (1, 4, 16)
    triton_consumer_concurrency: int = 4
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


def describe_model(archive: Path) -> str:
    """The archive's file name, backbone, input size and version: what the numbers are of."""
    from geoverdict_training.serving.bundle import read_bundle  # noqa: PLC0415

    bundle = read_bundle(archive)
    return f"{archive.name}: {bundle.spec.backbone} at {bundle.input_size} px, {bundle.version}"


def run(options: BenchOptions) -> BenchResults:
    """Run every stage, write the results (report.py) and return them."""
    from benchmarks import inprocess, partitioning, provenance_cost, report  # noqa: PLC0415
    from geoverdict.demo.archive import find_archive  # noqa: PLC0415
    from geoverdict_stack.stack import SERVICES, Stack, StackConfig, sigterm_as_exit  # noqa: PLC0415

    archive = find_archive(options.model)
    started = time.monotonic()
    machine = Machine.here()
    model = describe_model(archive)
    print(f"benchmarking {model} on {machine.cores} cores", flush=True)

    part = partitioning.run(n=options.partition_points)
    print(partitioning.report(part), flush=True)

    photos = load_photos(options.photos, options.events)
    raw = inprocess.raw_throughput(archive, photos, options.batch_sizes)
    print(f"raw: {raw} images/s by batch size", flush=True)
    handler = inprocess.handler_throughput(archive, photos, options.batch_size)
    print(f"handler: {handler} images/s", flush=True)
    model_cpu = inprocess.model_cpu_ms_per_image(archive, photos, options.triton_batch_size)
    print(f"model alone: {model_cpu} CPU-ms per image (1 thread)", flush=True)
    stages = inprocess.stage_cpu_ms_per_image(archive, photos, options.triton_batch_size)
    print(f"stages: {stages} CPU-ms per image (1 thread)", flush=True)
    # the stream's size bounds it too (a test's tiny run stays tiny)
    cost_options = provenance_cost.CostOptions(
        measured=min(provenance_cost.CostOptions.measured, options.events),
        loaded=min(provenance_cost.CostOptions.loaded, 4 * options.events),
    )
    cost = provenance_cost.run(
        load_photos(options.photos, cost_options.measured + cost_options.loaded), cost_options
    )
    provenance_cost.write(cost, options.out, options.docs)
    print(provenance_cost.report(cost), flush=True)

    config = StackConfig.with_free_ports(
        run_dir=runs_dir() / "bench",
        model_store=archive.parent,
        models=(f"{MODEL_NAME}={archive.name}",),
        enable_model_api=True,
        services=SERVICES,
    )
    with sigterm_as_exit(), Stack(config) as stack:
        served = _serving(stack, archive, photos, options)
        streams = _streams(stack, photos, options)
        at_least_once = _at_least_once(stack, photos, options)
        triton = _triton(stack, photos, options)

    results = BenchResults(
        machine=machine,
        model=model,
        settings=options.to_json(),
        partitioning=part,
        in_process=InProcess(raw, handler, model_cpu, stages),
        serving=served,
        streams=streams,
        seconds=round(time.monotonic() - started, 1),
        triton=triton,
        at_least_once=at_least_once,
    )
    report.write(results, options.out, options.docs)
    return results


def _serving(stack: Stack, archive: Path, photos: list[bytes], options: BenchOptions) -> Serving:
    """TorchServe at the pipeline's batch size over the concurrencies, then each other batch
    size (registered for the run) at four batches in flight."""
    from benchmarks import serving  # noqa: PLC0415

    points = []
    for concurrency in options.concurrencies:
        points.append(
            serving.measure(
                stack, "torchserve", MODEL_NAME, photos, options.batch_size, concurrency
            )
        )
        print(f"torchserve {points[-1]}", flush=True)
    for size in options.batch_sizes:
        if size == options.batch_size:
            continue
        name = f"{MODEL_NAME}-b{size}"
        serving.register(stack, archive.name, name, size, delay_ms=20)
        try:
            points.append(
                serving.measure(stack, "torchserve", name, photos, size, max(4 * size, 8))
            )
        finally:
            serving.unregister(stack, name)
        print(f"torchserve {points[-1]}", flush=True)
    return Serving(tuple(points), options.batch_size)


def _streams(stack: Stack, photos: list[bytes], options: BenchOptions) -> Streams:
    """The pipeline (cold, then cached as a burst and paced) and the naive consumer, each on
    topics of its own."""
    from geoverdict_service.kafka_clients import make_producer  # noqa: PLC0415
    from geoverdict_service.settings import load_kafka_settings  # noqa: PLC0415

    kafka = load_kafka_settings(bootstrap_servers=stack.kafka_bootstrap)
    producer = make_producer(kafka, acks="all", linger_ms=5)
    try:
        pipeline, cached, cached_paced = _pipeline_runs(
            stack, kafka, producer, photos, options, "torchserve", options.consumer_concurrency
        )
        naive = _naive_run(stack, kafka, producer, photos[: options.naive_events])
    finally:
        producer.close()
    return Streams(pipeline, cached, cached_paced, naive)


def _at_least_once(stack: Stack, photos: list[bytes], options: BenchOptions) -> Guarantees:
    """The streams' pipeline runs again with at_least_once (they ran exactly_once, the
    default), Redis flushed first so that the cold run is cold."""
    from geoverdict_service.kafka_clients import make_producer  # noqa: PLC0415
    from geoverdict_service.settings import load_kafka_settings  # noqa: PLC0415

    _flush_cache(stack)
    kafka = load_kafka_settings(bootstrap_servers=stack.kafka_bootstrap)
    producer = make_producer(kafka, acks="all", linger_ms=5)
    try:
        runs = _pipeline_runs(
            stack,
            kafka,
            producer,
            photos,
            options,
            "torchserve",
            options.consumer_concurrency,
            {"GEOVERDICT_PROCESSING_GUARANTEE": "at_least_once"},
        )
    finally:
        producer.close()
    return Guarantees(*runs)


def _pipeline_runs(
    stack: Stack,
    kafka: KafkaSettings,
    producer: KafkaProducer,
    photos: list[bytes],
    options: BenchOptions,
    server: str,
    concurrency: int,
    extra_env: dict[str, str] | None = None,
) -> tuple[StreamResult, StreamResult, StreamResult]:
    """`geoverdict consume` as its own process, talking to `server`: warmed up, then the photos
    cold, the same photos `cached_repeats` times, and paced at `cached_paced_share` of the
    cached throughput."""
    from benchmarks import streams  # noqa: PLC0415
    from geoverdict_service.collector import VerdictCollector  # noqa: PLC0415

    topics = streams.Topics.create(stack.kafka_bootstrap, prefix="bench")
    collector = VerdictCollector.from_settings(kafka, topics.verdicts)
    consumer = streams.consumer_process(
        stack,
        topics,
        server,
        MODEL_NAME,
        {f"GEOVERDICT_{server.upper()}_CONCURRENCY": str(concurrency), **(extra_env or {})},
    )

    def measure(label: str, images: list[bytes], **kwargs: Any) -> StreamResult:
        result = streams.measure(label, producer, collector, topics.input, images, **kwargs)
        guarantee = (extra_env or {}).get("GEOVERDICT_PROCESSING_GUARANTEE", "exactly_once")
        print(f"{server} {guarantee} {label}: {result}", flush=True)
        return result

    try:
        measure("warm-up", photos[-8:])
        pipeline = measure(
            "pipeline", photos[:-8], consumer_pid=consumer.pid, broker_pids=stack.pids("kafka")
        )
        cached_images = list(photos) * options.cached_repeats
        cached = measure("cached", cached_images, consumer_pid=consumer.pid)
        # Latency of a steady stream below capacity (a burst only measures its own queue).
        rate = max(10.0, cached.events_per_s * options.cached_paced_share)
        paced = measure("cached, paced", cached_images[: int(rate * 3)], rate=rate)
    finally:
        streams.stop(consumer)
        collector.close()
    return pipeline, cached, paced


def _naive_run(
    stack: Stack, kafka: KafkaSettings, producer: KafkaProducer, photos: list[bytes]
) -> StreamResult:
    """The naive consumer as its own process, on the photos."""
    from benchmarks import streams  # noqa: PLC0415
    from geoverdict_service.collector import VerdictCollector  # noqa: PLC0415

    topics = streams.Topics.create(stack.kafka_bootstrap, prefix="bench")
    collector = VerdictCollector.from_settings(kafka, topics.verdicts)
    naive = streams.naive_process(stack, topics, MODEL_NAME, len(photos))
    try:
        result = streams.measure("naive", producer, collector, topics.input, photos)
        print(f"naive: {result}", flush=True)
    finally:
        streams.stop(naive)
        collector.close()
    return result


def _triton(stack: Stack, photos: list[bytes], options: BenchOptions) -> TritonBench:
    """Triton through the service's client (images per request x requests in flight), then
    the pipeline and the cached path with a consumer talking to it. Other photos than
    TorchServe's pipeline used are not needed: the pipeline's cache is keyed by model version,
    so Triton's cold run flushes Redis first."""
    from benchmarks import serving  # noqa: PLC0415
    from geoverdict_service.kafka_clients import make_producer  # noqa: PLC0415
    from geoverdict_service.settings import load_kafka_settings  # noqa: PLC0415

    points = []
    sweep = [(options.triton_batch_size, c) for c in options.triton_concurrencies]
    sweep += [(b, 4) for b in options.triton_batch_sizes if b != options.triton_batch_size]
    for batch, concurrency in sweep:
        points.append(serving.measure(stack, "triton", MODEL_NAME, photos, batch, concurrency))
        print(f"triton {points[-1]}", flush=True)
    _flush_cache(stack)
    kafka = load_kafka_settings(bootstrap_servers=stack.kafka_bootstrap)
    producer = make_producer(kafka, acks="all", linger_ms=5)
    try:
        pipeline, cached, _ = _pipeline_runs(
            stack, kafka, producer, photos, options, "triton", options.triton_consumer_concurrency
        )
    finally:
        producer.close()
    return TritonBench(Serving(tuple(points), options.triton_batch_size), pipeline, cached)


def _flush_cache(stack: Stack) -> None:
    """Empty the stack's Redis: a cold run must not find the other server's predictions."""
    import redis  # noqa: PLC0415

    admin = redis.Redis.from_url(stack.redis.url_for("admin"))
    try:
        admin.flushall()
    finally:
        admin.close()
