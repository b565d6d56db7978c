"""The verdict service against the real Kafka, Redis and TorchServe (integration)."""

from __future__ import annotations

import json

import pytest

from geoverdict_service import contract
from geoverdict_service.metrics import Metrics
from geoverdict_stack.stack import Stack
from tests.service.conftest import (
    collect,
    events_for,
    jpeg,
    metric_value,
    publish_events,
    running,
    service_settings,
)


@pytest.mark.integration
def test_every_event_gets_one_valid_verdict_then_the_cache_answers(
    stack: Stack, fixture_model: str, topics: dict[str, str]
) -> None:
    settings = service_settings(stack, fixture_model, topics)
    images = [jpeg(i) for i in range(60)]
    events = events_for(images, claim=(48.8566, 2.3522))
    metrics = Metrics()
    with running(settings, metrics):
        publish_events(stack, settings.input_topic, events)
        first = collect(stack, settings.verdict_topic, len(events))
        # The same photos again (new events): served from Redis, TorchServe not asked.
        requests_before = metric_value(metrics, "geoverdict_inference_requests_total")
        again = events_for(images)
        publish_events(stack, settings.input_topic, again)
        second = collect(stack, settings.verdict_topic, 2 * len(events))
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
        said_paris = verdict["location"]["best_guess"]["lat"] == pytest.approx(48.8566)
        assert check["location_mismatch"] is (not said_paris)


@pytest.mark.parametrize(
    "reply",
    [{}, {"model_version": "v", "cells": "not a list"}, {"error": "a string, not an object"}],
    ids=["empty", "wrong type", "bad error"],
)
def test_a_reply_breaking_the_contract_is_a_dead_letter_not_a_crash(reply: dict) -> None:
    from geoverdict_service.consumer import checked_prediction
    from geoverdict_service.exceptions import BadEventError

    with pytest.raises(BadEventError) as excinfo:
        checked_prediction(reply)
    assert excinfo.value.reason == "invalid_prediction"
