"""Intake: records parsed, images at hand (inline or fetched within a deadline) and hashed."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator

import pytest
from kafka import TopicPartition

from geoverdict_service.backoff import delay
from geoverdict_service.events import make_event
from geoverdict_service.exceptions import FetchError
from geoverdict_service.fetch import FetchPolicy
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.intake import Intake, fetch_wait_s
from tests.service.conftest import jpeg
from tests.service.fakes import INPUT, record

TP = TopicPartition(INPUT, 0)


def inline(image: bytes, post: str = "post") -> bytes:
    return json.dumps(make_event(post, image_bytes=image)).encode()


def by_url(url: str) -> bytes:
    return json.dumps(make_event("post", image_url=url)).encode()


def no_fetch(url: str) -> bytes:
    raise AssertionError(f"nothing to fetch here, asked for {url}")


@pytest.fixture
def intake_for() -> Iterator[Callable[..., Intake]]:
    """Intakes with a given fetch and deadline; their pools closed after the test."""
    made: list[Intake] = []

    def make(fetch: Callable[[str], bytes] = no_fetch, wait_s: float = 5.0) -> Intake:
        made.append(Intake(fetch, wait_s, Metrics()))
        return made[-1]

    yield make
    for intake in made:
        intake.close()


def test_every_record_becomes_one_item_in_poll_order_with_its_image_hashed(
    intake_for: Callable[..., Intake],
) -> None:
    image = jpeg(1)
    values = [inline(image), b"{not json", inline(jpeg(2), "second")]
    intake = intake_for()
    items = intake.read({TP: [record(0, i, v) for i, v in enumerate(values)]})
    assert [i.record.offset for i in items] == [0, 1, 2]
    assert items[0].image == image
    assert items[0].sha256 == hashlib.sha256(image).hexdigest()
    assert items[1].failure is not None and items[1].failure.reason == "invalid_json"
    assert [i.needs_inference for i in items] == [True, False, True]


def test_images_by_url_are_fetched_and_a_failed_fetch_fails_only_its_record(
    intake_for: Callable[..., Intake],
) -> None:
    image = jpeg(3)

    def fetch(url: str) -> bytes:
        if "missing" in url:
            raise FetchError("HTTP 404", "fetch_failed")
        return image

    intake = intake_for(fetch)
    values = [by_url("https://img.example.com/a.jpg"), by_url("https://img.example.com/missing")]
    found, missing = intake.read({TP: [record(0, i, v) for i, v in enumerate(values)]})
    assert found.image == image and found.failure is None
    assert found.sha256 == hashlib.sha256(image).hexdigest()
    assert "fetch" in found.timings_ms
    assert missing.failure is not None and missing.failure.reason == "fetch_failed"
    assert missing.sha256 == ""


def test_a_fetch_past_its_deadline_is_a_fetch_timeout(
    intake_for: Callable[..., Intake],
) -> None:
    release = threading.Event()

    def hanging(url: str) -> bytes:
        release.wait(5.0)
        return b"too late"

    intake = intake_for(hanging, wait_s=0.05)
    try:
        (late,) = intake.read({TP: [record(0, 0, by_url("https://img.example.com/slow.jpg"))]})
    finally:
        release.set()
    assert late.failure is not None and late.failure.reason == "fetch_timeout"
    assert late.image is None


@pytest.mark.parametrize("retries", [0, 2, 5])
def test_the_fetch_deadline_leaves_room_for_every_attempt_and_its_backoff(retries: int) -> None:
    policy = FetchPolicy(timeout_s=10.0, retries=retries, backoff_s=0.5)
    slowest = (retries + 1) * policy.timeout_s + sum(
        delay(attempt, policy.backoff_s) for attempt in range(retries)
    )
    assert fetch_wait_s(policy) > slowest
