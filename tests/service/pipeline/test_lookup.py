"""The two-level cache lookup: this process first, then Redis; checked entries only; fail-open."""

from __future__ import annotations

from typing import Any

from geoverdict_service.cache import cache_key
from geoverdict_service.exceptions import BadEventError
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.lookup import Lookup
from tests.service import samples
from tests.service.conftest import jpeg
from tests.service.fakes import BrokenCache, FakeCache, city_for, item

VERSION = samples.MODEL_VERSION


def predicted(offset: int, image: bytes) -> Item:
    """An item the model answered (as the predictions stage leaves it)."""
    answered = item(0, offset, image)
    answered.prediction = city_for(image)  # type: ignore[assignment]
    return answered


def count(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_stored_photo_is_answered_from_redis_then_from_the_process() -> None:
    class CountingCache(FakeCache):
        asked = 0

        def get_many(self, keys: Any) -> list[Any]:
            self.asked += 1
            return super().get_many(keys)

    cache, image = CountingCache(), jpeg(1)
    Lookup(cache, Metrics(), 100).store([predicted(0, image)])  # one consumer stores it
    metrics = Metrics()
    lookup = Lookup(cache, metrics, 100)  # another (a fresh process) finds it in Redis
    first, second = item(0, 1, image), item(0, 2, image)
    lookup.find([first], VERSION)
    lookup.find([second], VERSION)
    assert first.cache_hit and second.cache_hit
    assert first.prediction == second.prediction == city_for(image)
    assert not first.needs_inference
    assert cache.asked == 1  # the second photo never reached Redis
    assert count(metrics, "geoverdict_cache_requests_total", {"result": "hit"}) == 2
    assert "cache" in first.timings_ms


def test_an_entry_of_another_model_version_is_a_miss() -> None:
    cache, image = FakeCache(), jpeg(2)
    forged = city_for(image) | {"model_version": "someone-else"}
    cache.store[cache_key(VERSION, item(0, 0, image).sha256)] = forged
    metrics = Metrics()
    wanted = item(0, 0, image)
    Lookup(cache, metrics, 100).find([wanted], VERSION)
    assert wanted.needs_inference and not wanted.cache_hit
    assert count(metrics, "geoverdict_cache_errors_total", {"operation": "invalid"}) == 1


def test_a_new_model_version_does_not_use_the_old_versions_answers() -> None:
    cache, image = FakeCache(), jpeg(3)
    lookup = Lookup(cache, Metrics(), 100)
    lookup.store([predicted(0, image)])
    wanted = item(0, 1, image)
    lookup.find([wanted], "the-next-model")
    assert wanted.needs_inference


def test_a_corrupt_entry_is_a_miss_that_the_models_answer_overwrites() -> None:
    cache, image = FakeCache(), jpeg(4)
    key = cache_key(VERSION, item(0, 0, image).sha256)
    cache.store[key] = {"model_version": VERSION, "cells": "not a list"}
    lookup = Lookup(cache, Metrics(), 100)
    wanted = item(0, 0, image)
    lookup.find([wanted], VERSION)
    assert wanted.needs_inference
    lookup.store([predicted(0, image)])
    assert cache.store[key] == city_for(image)


def test_a_cache_that_raises_is_a_miss_and_a_skipped_store_counted_never_a_crash() -> None:
    metrics, image = Metrics(), jpeg(5)
    lookup = Lookup(BrokenCache(), metrics, 100)
    wanted = item(0, 0, image)
    lookup.find([wanted], VERSION)
    assert wanted.needs_inference
    lookup.store([predicted(0, image)])
    assert count(metrics, "geoverdict_cache_errors_total", {"operation": "get"}) == 1
    assert count(metrics, "geoverdict_cache_errors_total", {"operation": "set"}) == 1


def test_without_a_cache_configured_nothing_is_kept_even_in_the_process() -> None:
    image = jpeg(6)
    lookup = Lookup(FakeCache(enabled=False), Metrics(), 100)
    lookup.store([predicted(0, image)])
    wanted = item(0, 1, image)
    lookup.find([wanted], VERSION)
    assert wanted.needs_inference


def test_before_the_model_version_is_known_every_lookup_is_a_miss() -> None:
    cache, image = FakeCache(), jpeg(7)
    Lookup(cache, Metrics(), 100).store([predicted(0, image)])
    metrics = Metrics()
    wanted = item(0, 1, image)
    Lookup(cache, metrics, 100).find([wanted], None)
    assert wanted.needs_inference
    assert count(metrics, "geoverdict_cache_requests_total", {"result": "miss"}) == 1


def test_what_came_from_the_cache_or_failed_is_not_stored_again() -> None:
    cache, image = FakeCache(), jpeg(8)
    hit, failed = predicted(0, image), predicted(1, jpeg(9))
    hit.cache_hit = "exact"
    failed.fail(BadEventError("a verdict that could not be built", "internal"))
    Lookup(cache, Metrics(), 100).store([hit, failed])
    assert cache.store == {}
