"""The verdict stage: each predicted record's verdict, encoded and keyed; a verdict that cannot
be built fails its record alone; a photo answered again keeps its location."""

from __future__ import annotations

import json
import time

import orjson

from geoverdict_common import contract
from geoverdict_service.events import Post, make_event, parse_event
from geoverdict_service.exceptions import BadEventError
from geoverdict_service.geo import PlaceNames
from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.verdicts import Verdicts
from geoverdict_service.verdicts import VerdictPolicy, checked_reply
from tests.service import samples
from tests.service.conftest import jpeg
from tests.service.fakes import city_for, item

POLICY = VerdictPolicy(min_precision_km=5.0)


class CountingPlaces(PlaceNames):
    """Place names that count how often they were asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def lookup(self, lat: float, lon: float) -> dict[str, str] | None:
        self.asked += 1
        return {"name": "Somewhere", "admin1": "Region", "country_code": "XX"}


def predicted(offset: int, image: bytes, claim: tuple[float, float] | None = None) -> Item:
    """An item as the predictions stage leaves it: its event read, its reply checked."""
    answered = item(0, offset, image)
    event = make_event(f"post-{offset}", image_bytes=image, claim=claim)
    answered.event = parse_event(json.dumps(event).encode())
    answered.prediction = checked_reply(city_for(image), POLICY.min_precision_km)
    answered.timings_ms["model"] = {"inference": 7.5}
    answered.provenance = samples.provenance()  # the provenance stage's
    return answered


def test_each_predicted_item_gets_its_verdict_encoded_and_keyed_by_its_event() -> None:
    answered = predicted(0, jpeg(1), claim=(48.85, 2.35))
    failed = predicted(1, jpeg(2))
    failed.fail(BadEventError("too large", "image_too_large"))
    unanswered = item(0, 2, jpeg(3))  # the model server was unavailable
    Verdicts(POLICY, CountingPlaces(), 10).build(
        [answered, failed, unanswered], time.perf_counter()
    )
    verdict = answered.verdict
    assert verdict is not None and answered.event is not None
    assert contract.errors(contract.VERDICT, verdict) == []
    assert answered.key == answered.event.id.encode()
    assert answered.payload is not None and orjson.loads(answered.payload) == verdict
    assert verdict["timings_ms"]["total"] >= 0 and verdict["timings_ms"]["model"]
    assert [c["claim_source"] for c in verdict["consistency"]] == ["event"]
    assert verdict["location"]["precision_floor_km"] == 5.0
    for untouched in (failed, unanswered):
        assert untouched.verdict is None and untouched.payload is None
    assert unanswered.failure is None  # still owed: the consumer pauses and asks again


def test_a_verdict_that_cannot_be_built_fails_its_item_alone() -> None:
    broken, eventless, fine = predicted(0, jpeg(4)), predicted(1, jpeg(5)), predicted(2, jpeg(6))
    assert broken.prediction is not None
    del broken.prediction["scene"]  # type: ignore[misc]
    eventless.event = None
    Verdicts(POLICY, None, 10).build([broken, eventless, fine], time.perf_counter())
    for failed in (broken, eventless):
        assert failed.failure is not None and failed.failure.reason == "internal"
        assert failed.payload is None
    assert fine.failure is None and fine.payload is not None


def test_a_photo_answered_again_keeps_its_location() -> None:
    places, image = CountingPlaces(), jpeg(7)
    verdicts = Verdicts(POLICY, places, 10)
    first, again = predicted(0, image), predicted(1, image)
    verdicts.build([first], time.perf_counter())
    verdicts.build([again], time.perf_counter())
    assert places.asked == 1
    assert first.verdict is not None and again.verdict is not None
    assert again.verdict["location"] == first.verdict["location"]
    assert again.verdict["id"] != first.verdict["id"]  # each event its own verdict
    uncached = CountingPlaces()
    Verdicts(POLICY, uncached, 0).build([predicted(2, image), predicted(3, image)], 0.0)
    assert uncached.asked == 2


def test_a_post_without_an_event_gets_the_verdict_its_event_would() -> None:
    # `geoverdict locate` answers a post (its photo and claim) through Verdicts.verdict, the
    # function the stage builds each record's verdict with: the same verdict but for its id.
    answered = predicted(0, jpeg(8), claim=(40.71, -74.0))
    Verdicts(POLICY, CountingPlaces(), 10).build([answered], time.perf_counter())
    event, prediction = answered.event, answered.prediction
    assert event is not None and prediction is not None and answered.verdict is not None
    post = Post(id="local", source=event.source, post_id=event.post_id, claim=event.claim)
    alone = Verdicts(POLICY, CountingPlaces(), 10).verdict(
        post,
        prediction,
        cache_hit=False,
        image_sha256=answered.sha256,
        timings_ms=answered.timings_ms,
        provenance=samples.provenance(),
    )
    assert alone["id"] == "local"
    own = {"id", "produced_at"}  # the verdict's own identity and time
    assert {k: v for k, v in alone.items() if k not in own} == {
        k: v for k, v in answered.verdict.items() if k not in own
    }
