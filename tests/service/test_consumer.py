"""The verdict service against the real Kafka, Redis and each model server (integration)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from geoverdict_common import contract
from geoverdict_service.events import make_event
from geoverdict_service.metrics import Metrics
from geoverdict_stack.stack import Stack
from tests import photos
from tests.service.conftest import (
    collect,
    events_for,
    jpeg,
    metric_value,
    publish_events,
    running,
    service_counts,
    service_settings,
)
from tests.stack_fixtures import Served


@pytest.mark.integration
def test_every_event_gets_one_valid_verdict_then_the_cache_answers(
    stack: Stack, fixture_server: Served, topics: dict[str, str]
) -> None:
    # A rule the fixture's sure answers (94 % on one city) can trip; the defaults are measured.
    settings = service_settings(
        stack, fixture_server, topics, mismatch_threshold_km=750, mismatch_max_mass=0.1
    )
    base = 7000 if fixture_server.server == "torchserve" else 7500
    images = [jpeg(base + i) for i in range(60)]  # photos no other test caches
    events = events_for(images, claim=(48.8566, 2.3522))
    metrics = Metrics()
    with running(settings, metrics):
        publish_events(stack, settings.kafka.input_topic, events)
        first = collect(stack, settings.kafka.verdict_topic, len(events))
        # The same photos again (new events): served from Redis, the model server not asked.
        requests_before = metric_value(metrics, "geoverdict_inference_requests_total")
        again = events_for(images)
        publish_events(stack, settings.kafka.input_topic, again)
        second = collect(stack, settings.kafka.verdict_topic, 2 * len(events))
        requests_after = metric_value(metrics, "geoverdict_inference_requests_total")

    verdicts = {r.key.decode(): json.loads(r.value) for r in first}
    assert set(verdicts) == {e["id"] for e in events}
    for verdict in verdicts.values():
        assert contract.errors(contract.VERDICT, verdict) == []
        assert verdict["cache_hit"] is False
        assert verdict["location"]["best_guess"]["place"]["country_code"]
    cached = [json.loads(r.value) for r in second if r.key.decode() in {e["id"] for e in again}]
    assert len(cached) == len(again)
    assert all(v["cache_hit"] for v in cached)
    assert requests_after == requests_before
    assert metric_value(metrics, "geoverdict_cache_requests_total", {"result": "hit"}) >= len(again)
    # A Paris claim: no mismatch where the model says Paris, a mismatch where it says elsewhere.
    for verdict in verdicts.values():
        (check,) = verdict["consistency"]
        said_paris = verdict["location"]["best_guess"]["lat"] == pytest.approx(48.8566, abs=0.05)
        assert check["location_mismatch"] is (not said_paris)


@pytest.mark.integration
def test_500_development_photos_give_500_valid_verdicts_with_the_demo_model(
    stack: Stack,
    demo_server: Served,
    topics: dict[str, str],
    shared_data: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Other photos on each server: the cache (keyed by model version) would answer the second.
    start = 0 if demo_server.server == "torchserve" else 500
    paths = sorted((shared_data / "im2gps3k-dev" / "images").glob("*.jpg"))[start : start + 500]
    events = [make_event(p.stem, image_bytes=p.read_bytes(), claim=(0.0, 0.0)) for p in paths]
    poison = {
        "image_too_many_pixels": make_event("bomb", image_bytes=photos.png_bomb()),
        "image_truncated": make_event(
            "cut", image_bytes=photos.truncated_jpeg(paths[0].read_bytes())
        ),
    }
    concurrency = 16 if demo_server.server == "torchserve" else 4  # Triton: 8 images a request
    settings = service_settings(stack, demo_server, topics, server={"concurrency": concurrency})
    metrics = Metrics()
    # A backlog at start-up: fetches of several full partitions at once (a frame larger than
    # kafka-python's default receive limit once made every start log an ERROR and reconnect).
    publish_events(stack, settings.kafka.input_topic, [*events, *poison.values()])
    caplog.set_level(logging.WARNING)
    with running(settings, metrics):
        verdicts = collect(stack, settings.kafka.verdict_topic, len(events), timeout_s=300)
        dead = collect(stack, settings.kafka.dead_letter_topic, len(poison), timeout_s=30)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    by_id = {r.key.decode(): json.loads(r.value) for r in verdicts}
    assert set(by_id) == {e["id"] for e in events}, service_counts(metrics)
    assert len(verdicts) == 500
    versions = set()
    for verdict in by_id.values():
        assert contract.errors(contract.VERDICT, verdict) == []
        versions.add(verdict["model_version"])
    assert len(versions) == 1 and versions.pop().startswith("geoverdict-")
    assert sorted(dict(r.headers)["reason"].decode() for r in dead) == sorted(poison)
