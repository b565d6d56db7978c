"""Predictions of the cache's misses: each photo asked once, bad image vs. server unavailable."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import pytest

from geoverdict_service.geo import coarsen
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.predictions import Predictions
from tests.service import samples
from tests.service.conftest import jpeg
from tests.service.fakes import FakeInference, bad_image, city_for, item


def model_info(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("geoverdict_model_info", {"version": "v2"})


def test_the_same_photo_twice_is_asked_once_and_both_records_are_answered() -> None:
    inference, image = FakeInference(), jpeg(1)
    items = [item(0, 0, image), item(0, 1, image), item(1, 0, jpeg(2))]
    unavailable = Predictions(inference, Metrics(), 5.0).predict(items)
    assert not unavailable
    assert len(inference.requests) == 2
    assert [i.prediction is not None for i in items] == [True, True, True]
    assert items[0].prediction == items[1].prediction
    assert "model" in items[0].timings_ms


def test_a_bad_image_fails_its_record_and_teaches_the_model_version() -> None:
    predictions = Predictions(FakeInference(bad_image), Metrics(), 5.0)
    (bad,) = items = [item(0, 0, jpeg(3))]
    assert not predictions.predict(items)
    assert bad.failure is not None and bad.failure.reason == "image_undecodable"
    assert predictions.model_version == samples.MODEL_VERSION


def test_an_unavailable_server_leaves_every_miss_owed_and_never_failed() -> None:
    inference = FakeInference()
    inference.unavailable = True
    items = [item(0, 0, jpeg(4)), item(0, 1, jpeg(5))]
    assert Predictions(inference, Metrics(), 5.0).predict(items)
    assert all(i.needs_inference and i.failure is None for i in items)


def test_a_reply_breaking_the_contract_is_that_records_dead_letter() -> None:
    broken = FakeInference(lambda image: {"model_version": "v", "cells": "not a list"})
    (bad,) = items = [item(0, 0, jpeg(6))]
    assert not Predictions(broken, Metrics(), 5.0).predict(items)
    assert bad.failure is not None and bad.failure.reason == "invalid_prediction"


def test_a_client_that_raises_unexpectedly_fails_only_that_record() -> None:
    class Exploding(FakeInference):
        def _answer(self, image: bytes) -> Future[dict[str, Any]]:
            if image == jpeg(7):
                future: Future[dict[str, Any]] = Future()
                future.set_exception(RuntimeError("pool exploded"))
                return future
            return super()._answer(image)

    items = [item(0, 0, jpeg(7)), item(0, 1, jpeg(8))]
    assert not Predictions(Exploding(), Metrics(), 5.0).predict(items)
    assert items[0].failure is not None and items[0].failure.reason == "internal"
    assert items[1].prediction == city_for(jpeg(8))


def test_a_client_that_cannot_take_the_batch_dead_letters_its_misses_and_does_not_raise() -> None:
    class Refusing(FakeInference):
        def submit_many(self, images: Sequence[bytes]) -> list[Future[dict[str, Any]]]:
            raise RuntimeError("no threads left")

    items = [item(0, 0, jpeg(7)), item(0, 1, jpeg(8))]
    assert not Predictions(Refusing(), Metrics(), 5.0).predict(items)
    assert [i.failure.reason if i.failure else None for i in items] == ["internal", "internal"]


def test_each_distinct_image_is_asked_once_in_one_call() -> None:
    inference = FakeInference()
    items = [item(0, 0, jpeg(1)), item(0, 1, jpeg(2)), item(1, 0, jpeg(1))]
    Predictions(inference, Metrics(), 5.0).predict(items)
    assert inference.calls == [[jpeg(1), jpeg(2)]]
    assert items[0].prediction == items[2].prediction == city_for(jpeg(1))


def test_the_photos_exact_gps_is_kept_only_as_coarse_as_the_privacy_floor() -> None:
    exact = (48.858089722, 2.294571111)
    exif = FakeInference(lambda image: dict(samples.prediction([(samples.PARIS, 1.0)], exif=exact)))
    (answered,) = items = [item(0, 0, jpeg(9))]
    Predictions(exif, Metrics(), 5.0).predict(items)
    assert answered.prediction is not None
    location = answered.prediction["exif_location"]
    assert location is not None
    assert (location["lat"], location["lon"]) == coarsen(*exact, 5.0) != exact


def test_a_new_model_version_is_learned_logged_and_exposed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    predictions = Predictions(FakeInference(), metrics, 5.0)
    predictions.learn_model_version(None)  # TorchServe not answering yet: nothing learned
    assert predictions.model_version is None
    predictions.learn_model_version("v1")
    predictions.learn_model_version("v2")
    assert predictions.model_version == "v2"
    assert model_info(metrics) == 1.0
    assert "model version changed: v1 -> v2" in caplog.text
