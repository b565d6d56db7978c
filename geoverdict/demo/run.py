"""`geoverdict demo`: the whole system once, on real servers, leaving nothing running.

Stack up (Kafka, Redis, a model server with the demo model: TorchServe, or Triton with
--model-server triton), a consumer, real photos published as events, verdicts shown as they
arrive, the same photos again (now answered from the cache), a summary, the verdicts written to
a JSON-lines file and an offline HTML map, stack down.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from geoverdict.demo.archive import archive_baselines, find_archive
from geoverdict.demo.exceptions import DemoError
from geoverdict.demo.photos import DemoPhoto, demo_photos
from geoverdict_common.paths import runs_dir

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from geoverdict_service.collector import Collected, VerdictCollector
    from geoverdict_service.settings import KafkaSettings, ServiceSettings
    from geoverdict_stack.stack import Stack

MODEL_NAME = "geoverdict"
PHOTO_LIMIT = 400  # the validation photographers' 300 photos and scikit-image's six
PASSES = ("first pass (model)", "second pass (same photos: cache)")
PASS_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DemoOptions:
    """Which photos, which model, where the run folder is."""

    images: Path | None = None  # the user's photos; default: scikit-image's and the dev photos
    model: Path | None = None  # default: the newest archive in model_store/
    out: Path = field(default_factory=lambda: runs_dir() / "demo")
    limit: int = PHOTO_LIMIT
    model_server: str = "torchserve"  # or triton (GEOVERDICT_MODEL_SERVER)


@dataclass(frozen=True)
class DemoResult:
    """What the demo saw: each pass's verdicts, the dead letters, the files it wrote."""

    passes: dict[str, Collected]
    dead_letters: int
    verdict_file: Path
    map_file: Path

    @property
    def answered(self) -> bool:
        """Whether every event of every pass got its verdict."""
        return all(len(c.answers) == len(c.sent_at) for c in self.passes.values())


def run(options: DemoOptions) -> DemoResult:
    """Run the demo, printing as it goes."""
    archive = find_archive(options.model)
    photos = demo_photos(options.images, options.limit, archive)
    if not photos:
        raise DemoError("no photos to publish (give --images DIR)")
    print(_describe(photos, own=options.images is not None))
    options.out.mkdir(parents=True, exist_ok=True)
    passes, dead = _on_a_stack(archive, photos, options.out / "stack", options.model_server)
    result = _write(passes, dead, options.out, len(photos))
    _print_summary(result, len(photos), archive)
    return result


def _describe(photos: Sequence[DemoPhoto], own: bool) -> str:
    claimed = sum(p.claim is not None for p in photos)
    return (
        f"{len(photos)} photos: {len(photos) - claimed} without a position, {claimed} with their "
        "true position as the claim"
        + ("" if own else " (photographers the model was validated on, never trained on)")
    )


def _on_a_stack(
    archive: Path, photos: Sequence[DemoPhoto], run_dir: Path, model_server: str
) -> tuple[dict[str, Collected], int]:
    """Start the stack and a consumer, publish the photos twice, count the dead letters, stop
    everything."""
    from geoverdict_stack.stack import Stack, StackConfig, format_status, sigterm_as_exit  # noqa: PLC0415

    config = StackConfig.with_free_ports(
        run_dir=run_dir,
        model_store=archive.parent,
        models=(f"{MODEL_NAME}={archive.name}",),
        services=("kafka", "redis", model_server),
    )
    server = "Triton" if model_server == "triton" else "TorchServe"
    print(f"starting Kafka, Redis and {server} with {archive.name} (logs in {config.run_dir}) ...")
    with sigterm_as_exit(), Stack(config) as stack:
        print(format_status(stack.status()))
        settings = _settings(stack)
        with _consumer(settings):
            passes = _publish_passes(settings.kafka, photos)
            dead = _count_dead_letters(settings.kafka)
        print("stopping the stack ...")
    return passes, dead


def _settings(stack: Stack) -> ServiceSettings:
    """The service's settings for this stack, its topics created."""
    from geoverdict_service.settings import load_service_settings  # noqa: PLC0415
    from geoverdict_stack.kafka import create_topics  # noqa: PLC0415

    server = stack.config.model_server or "torchserve"
    settings = load_service_settings(
        kafka={"bootstrap_servers": stack.kafka_bootstrap},
        model_server=server,
        **{server: {**stack.model_server_settings(), "model_name": MODEL_NAME}},
        redis_url=stack.redis_url,
        metrics_port=0,
        metrics_host="127.0.0.1",
    )
    kafka = settings.kafka
    topics = (kafka.input_topic, kafka.verdict_topic, kafka.dead_letter_topic)
    create_topics(stack.kafka_bootstrap, dict.fromkeys(topics, 4))
    return settings


@contextlib.contextmanager
def _consumer(settings: ServiceSettings) -> Iterator[None]:
    """The verdict service on a thread, stopped on leaving."""
    from geoverdict_service.consumer import VerdictService  # noqa: PLC0415

    service = VerdictService.from_settings(settings)
    if service is None:
        raise DemoError("the consumer was stopped while it started")
    metrics_port = service.start_health_server()
    thread = threading.Thread(target=service.run, name="consumer", daemon=True)
    thread.start()
    print(f"consumer running; metrics at http://127.0.0.1:{metrics_port}/metrics")
    try:
        yield
    finally:
        service.stop()
        thread.join(timeout=60)


def _publish_passes(kafka: KafkaSettings, photos: Sequence[DemoPhoto]) -> dict[str, Collected]:
    """Every photo published and answered, once per pass."""
    from geoverdict_service.collector import VerdictCollector  # noqa: PLC0415
    from geoverdict_service.kafka_clients import make_producer  # noqa: PLC0415

    producer = make_producer(kafka, acks="all", linger_ms=5)
    try:
        with VerdictCollector.from_settings(kafka) as collector:
            return {
                label: _publish_pass(label, producer, collector, kafka, photos) for label in PASSES
            }
    finally:
        producer.close()


def _publish_pass(
    label: str,
    producer: KafkaProducer,
    collector: VerdictCollector,
    kafka: KafkaSettings,
    photos: Sequence[DemoPhoto],
) -> Collected:
    from tqdm import tqdm  # noqa: PLC0415

    from geoverdict_service.events import make_event  # noqa: PLC0415
    from geoverdict_service.publisher import send_events  # noqa: PLC0415
    from geoverdict_service.watcher import HEADER, format_row  # noqa: PLC0415

    events = (
        make_event(Path(photo.name).stem, image_bytes=photo.data, claim=photo.claim)
        for photo in tqdm(photos, desc=f"publishing, {label}", unit="photo")
    )
    sent_at = send_events(producer, kafka.input_topic, events)
    print(HEADER)
    return collector.collect(
        sent_at, PASS_TIMEOUT_S, on_verdict=lambda v: print(format_row(v), flush=True)
    )


def _count_dead_letters(kafka: KafkaSettings) -> int:
    from geoverdict_service.kafka_clients import make_consumer  # noqa: PLC0415

    consumer = make_consumer(
        kafka, auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1500
    )
    consumer.subscribe([kafka.dead_letter_topic])
    count = sum(1 for _ in consumer)
    consumer.close()
    return count


def _write(passes: dict[str, Collected], dead: int, out: Path, photos: int) -> DemoResult:
    """The verdicts as JSON lines and the first pass's on a map."""
    from geoverdict.demo import verdict_map  # noqa: PLC0415

    verdicts = [v for collected in passes.values() for v in collected.verdicts]
    verdict_file = out / "verdicts.jsonl"
    verdict_file.write_text("".join(json.dumps(v) + "\n" for v in verdicts))
    page = verdict_map.write(verdicts[:photos], out / "verdicts.html")
    return DemoResult(passes, dead, verdict_file, page)


def _print_summary(result: DemoResult, photos: int, archive: Path) -> None:
    from geoverdict.demo.summary import accuracy_summary, pass_summary  # noqa: PLC0415

    first = next(iter(result.passes.values()))
    print()
    for label, collected in result.passes.items():
        print(pass_summary(label, collected))
    print(f"dead letters: {result.dead_letters}")
    print(accuracy_summary(first.verdicts[:photos], archive_baselines(archive)))
    print(f"verdicts: {result.verdict_file}\nmap: {result.map_file}")
