"""`geoverdict demo`: the whole system once, on real servers, leaving nothing running.

Stack up (Kafka, Redis, TorchServe with the demo model), a consumer, real photos published as
events, verdicts shown as they arrive, the same photos again (now answered from the cache), a
summary, the verdicts written to a JSON-lines file and an offline HTML map, stack down.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from geoverdict.demo.archive import find_archive
from geoverdict.demo.photos import demo_photos

MODEL_NAME = "geoverdict"
PHOTO_LIMIT = 400  # the validation photographers' 300 photos and scikit-image's six
THRESHOLDS_KM = (25, 200, 750, 2500)


def accuracy_summary(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """This run's own accuracy against the posts' claims (the demo's claims are the photos'
    true positions), the model's mean confidence, and how often it flagged an honest post."""
    checked = [
        (v, check)
        for v in verdicts
        for check in v["consistency"]
        if check["claim_source"] == "event"
    ]
    if not checked:
        return "accuracy: no photo had a claimed location to compare with"
    distances = [check["distance_km"] for _, check in checked]
    within = ", ".join(
        f"{sum(d <= t for d in distances) / len(distances):.1%} within {t:,} km"
        for t in THRESHOLDS_KM
    )
    confidence = statistics.mean(v["location"]["confidence"]["top1"] for v, _ in checked)
    flagged = sum(check["location_mismatch"] for _, check in checked)
    return (
        f"accuracy on {len(checked)} photos the model never saw: {within}; "
        f"median error {statistics.median(distances):,.0f} km\n"
        f"mean confidence of the best cell: {confidence:.1%}\n"
        f"location_mismatch flagged on {flagged} of {len(checked)} true claims "
        f"({flagged / len(checked):.1%})"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    from tqdm import tqdm  # noqa: PLC0415

    from geoverdict.demo import verdict_map  # noqa: PLC0415
    from geoverdict_service.consumer import VerdictService  # noqa: PLC0415
    from geoverdict_service.events import make_event  # noqa: PLC0415
    from geoverdict_service.kafka_clients import make_consumer, make_producer  # noqa: PLC0415
    from geoverdict_service.settings import load_service_settings  # noqa: PLC0415
    from geoverdict_service.watcher import HEADER, format_row  # noqa: PLC0415
    from geoverdict_stack.kafka import create_topics  # noqa: PLC0415
    from geoverdict_stack.stack import Stack, StackConfig, format_status, sigterm_as_exit  # noqa: PLC0415

    archive = find_archive(args.model)
    photos = demo_photos(args.images, args.limit, archive)
    if not photos:
        print("no photos to publish (give --images DIR)")
        return 1
    claimed = sum(p.claim is not None for p in photos)
    print(
        f"{len(photos)} photos: {len(photos) - claimed} without a position, {claimed} with their "
        "true position as the claim" + ("" if args.images else
        " (photographers the model was validated on, never trained on)")
    )  # fmt: skip
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = StackConfig.with_free_ports(
        run_dir=out / "stack", model_store=archive.parent, models=(f"{MODEL_NAME}={archive.name}",)
    )
    print(
        f"starting Kafka, Redis and TorchServe with {archive.name} (logs in {config.run_dir}) ..."
    )
    with sigterm_as_exit(), Stack(config) as stack:
        print(format_status(stack.status()))
        settings = load_service_settings(
            kafka={"bootstrap_servers": stack.kafka_bootstrap},
            torchserve={
                "url": stack.torchserve.url("inference"),
                "key_file": stack.torchserve_key_file,
                "model_name": MODEL_NAME,
            },
            redis_url=stack.redis_url, metrics_port=0, metrics_host="127.0.0.1",
        )  # fmt: skip
        kafka = settings.kafka
        topics = (kafka.input_topic, kafka.verdict_topic, kafka.dead_letter_topic)
        create_topics(stack.kafka_bootstrap, dict.fromkeys(topics, 4))
        service = VerdictService.from_settings(settings)
        if service is None:
            return 1
        metrics_port = service.start_health_server()
        consumer_thread = threading.Thread(target=service.run, name="consumer", daemon=True)
        consumer_thread.start()
        print(f"consumer running; metrics at http://127.0.0.1:{metrics_port}/metrics")

        producer = make_producer(kafka, acks="all", linger_ms=5)
        watcher = make_consumer(
            kafka, auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000
        )
        watcher.subscribe([kafka.verdict_topic])
        passes: list[dict[str, Any]] = []
        all_verdicts: list[dict[str, Any]] = []
        for label in ("first pass (model)", "second pass (same photos: cache)"):
            sent: dict[str, float] = {}
            started = time.monotonic()
            for photo in tqdm(photos, desc=f"publishing, {label}", unit="photo"):
                event = make_event(Path(photo.name).stem, image_bytes=photo.data, claim=photo.claim)
                producer.send(settings.kafka.input_topic, key=event["id"].encode(),
                              value=json.dumps(event).encode())  # fmt: skip
                sent[event["id"]] = datetime.fromisoformat(event["time"]).timestamp()
            producer.flush()
            print(HEADER)
            got = _collect(watcher, sent, timeout_s=300.0, show=format_row)
            elapsed = time.monotonic() - started
            latencies = [
                datetime.fromisoformat(v["produced_at"]).timestamp() - sent[v["id"]] for v in got
            ]
            passes.append({"pass": label, "events": len(sent), "verdicts": len(got),
                           "cache_hits": sum(v["cache_hit"] for v in got), "seconds": elapsed,
                           "latencies": latencies})  # fmt: skip
            all_verdicts.extend(got)
        producer.close()
        watcher.close()
        dead = _count_dead_letters(kafka)
        service.stop()
        consumer_thread.join(timeout=60)
        print("stopping the stack ...")

    verdict_file = out / "verdicts.jsonl"
    verdict_file.write_text("".join(json.dumps(v) + "\n" for v in all_verdicts))
    page = verdict_map.write(all_verdicts[: len(photos)], out / "verdicts.html")
    print()
    for p in passes:
        lat = sorted(p["latencies"]) or [0.0]
        print(
            f"{p['pass']}: {p['events']} events, {p['verdicts']} verdicts, "
            f"{p['cache_hits']} cache hits, {p['verdicts'] / p['seconds']:.1f} verdicts/s, "
            f"end-to-end latency p50 {statistics.median(lat) * 1000:.0f} ms, "
            f"max {lat[-1] * 1000:.0f} ms"
        )
    print(f"dead letters: {dead}")
    print(accuracy_summary(all_verdicts[: len(photos)]))
    print(f"verdicts: {verdict_file}\nmap: {page}")
    answered = all(p["verdicts"] == p["events"] for p in passes)
    return 0 if answered else 1


def _collect(
    watcher: Any, expected: dict[str, float], timeout_s: float, show: Any
) -> list[dict[str, Any]]:
    """Verdicts for the expected event ids, printed as they arrive."""
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < len(expected) and time.monotonic() < deadline:
        for message in watcher:
            verdict = json.loads(message.value)
            if verdict["id"] in expected and verdict["id"] not in got:
                got[verdict["id"]] = verdict
                print(show(verdict), flush=True)
            if len(got) == len(expected):
                break
    return list(got.values())


def _count_dead_letters(kafka: Any) -> int:
    from geoverdict_service.kafka_clients import make_consumer  # noqa: PLC0415

    consumer = make_consumer(
        kafka, auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1500
    )
    consumer.subscribe([kafka.dead_letter_topic])
    count = sum(1 for _ in consumer)
    consumer.close()
    return count
