"""The verdict's provenance object, from a match, credentials and a capture time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from geoverdict_service.events import Claim
from geoverdict_service.provenance.capture import CaptureTime
from geoverdict_service.provenance.credentials import ABSENT, Credentials
from geoverdict_service.provenance.index import Match, Sighting
from geoverdict_service.provenance.report import ProvenancePolicy, provenance_report

POSTED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PARIS, BERLIN, KYIV = (48.8566, 2.3522), (52.52, 13.405), (50.4501, 30.5234)


def match(*claims: tuple[float, float]) -> Match:
    first = Sighting("e-first", "post-1", "tests", POSTED - timedelta(days=400), claims[-1])
    return Match(
        photo_id="ab" * 8,
        distance=12,
        first=first,
        times_seen=len(claims),
        claims=tuple((lat, lon, POSTED - timedelta(days=k)) for k, (lat, lon) in enumerate(claims)),
        prediction_key=None,
    )


def report(
    found: Match | None,
    claim: tuple[float, float] | None,
    credentials: Credentials = ABSENT,
    exif: CaptureTime | None = None,
    floor_km: float = 5.0,
) -> dict:  # type: ignore[type-arg]
    return dict(
        provenance_report(
            fingerprint=None,
            index="ok",
            match=found,
            credentials=credentials,
            exif_capture=exif,
            claim=Claim(*claim, source="event") if claim else None,
            posted_at=POSTED,
            policy=ProvenancePolicy(recycled_claim_km=200.0, min_precision_km=floor_km),
        )
    )


def test_an_earlier_claim_far_away_is_a_recycled_claim() -> None:
    out = report(match(PARIS), KYIV)
    assert out["near_duplicate"]["event_id"] == "e-first"
    assert out["near_duplicate"]["first_seen"] == (POSTED - timedelta(days=400)).isoformat()
    [earlier] = out["earlier_claims"]
    assert (earlier["lat"], earlier["lon"]) == PARIS
    assert earlier["distance_km"] == pytest.approx(2025, abs=10)
    assert earlier["distance_km"] % 5 == 0  # told no finer than the privacy floor
    assert out["recycled_claim"] is True


def test_the_same_place_told_twice_is_not_recycled() -> None:
    out = report(match((48.86, 2.35)), PARIS)
    assert out["earlier_claims"][0]["distance_km"] == 0 and out["recycled_claim"] is False


def test_any_far_claim_among_several_makes_it_recycled_and_none_without_a_claim() -> None:
    assert report(match(PARIS, BERLIN), PARIS)["recycled_claim"] is True
    unclaimed = report(match(PARIS, BERLIN), None)
    assert [c["distance_km"] for c in unclaimed["earlier_claims"]] == [None, None]
    assert unclaimed["recycled_claim"] is False


def test_no_match_no_near_duplicate() -> None:
    out = report(None, PARIS)
    assert out["near_duplicate"] is None and out["earlier_claims"] == []
    assert out["recycled_claim"] is False and out["fingerprint"] is None


def test_a_manifest_capture_place_is_floored_and_measured_from_the_claim() -> None:
    signed = Credentials(state="untrusted", capture_location=(52.520008, 13.404954))
    location = report(None, PARIS, signed, floor_km=5.0)["c2pa"]["capture_location"]
    assert location["lat"] != 52.520008  # snapped to the 5 km grid, not the exact place
    assert abs(location["lat"] - 52.52) < 0.05 and abs(location["lon"] - 13.405) < 0.1
    assert location["distance_km"] == pytest.approx(880, abs=10)


def test_capture_time_from_exif_first_then_from_the_manifest() -> None:
    exif = CaptureTime(datetime(2020, 5, 1, tzinfo=UTC), "exif", True)
    manifest = Credentials(state="valid", captured_at=datetime(2019, 1, 1, 8, 0))
    from_exif = report(None, None, manifest, exif)["capture"]
    assert from_exif["source"] == "exif" and from_exif["before_post"].startswith("6 years")
    from_manifest = report(None, None, manifest)["capture"]
    assert from_manifest["source"] == "c2pa"
    assert from_manifest["captured_at"] == "2019-01-01T08:00:00+00:00"
    assert from_manifest["offset_known"] is False  # a local time without its offset
