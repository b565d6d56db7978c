"""Verdicts: the location mismatch rule and the precision floor."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from geoverdict_common import contract
from geoverdict_common.contract_types import Prediction
from geoverdict_common.distances import haversine_km
from geoverdict_common.exceptions import ContractError
from geoverdict_service.events import Claim, ImageEvent, Post, make_event, parse_event
from geoverdict_service.geo import PlaceNames, coarsen, parent_token, s2_level_for
from geoverdict_service.verdicts import VerdictPolicy, build_verdict, checked_reply, consistency
from tests.service import samples
from tests.service.s2_reference import DEMO_CELL_RADII_KM
from tests.service.samples import (
    MODEL_VERSION,
    NEW_YORK,
    PARIS,
    SYDNEY,
    TOKYO,
    confident_paris,
    prediction,
)

# 5,000 km due south of Paris (45 degrees of latitude is 5,004 km), in the Gulf of Guinea.
FAR_SOUTH = (PARIS[0] - 44.966, PARIS[1])
LAGOS = (6.5244, 3.3792)  # about 330 km from FAR_SOUTH
SHA = "ab" * 32
# The rule's logic, checked at round numbers (the defaults come from docs/verdicts.md).
RULE = VerdictPolicy(mismatch_threshold_km=750.0, mismatch_max_mass=0.1)


def claim_at(point: tuple[float, float], source: str = "event") -> Claim:
    return Claim(point[0], point[1], source)


def event_with(claim: tuple[float, float] | None) -> ImageEvent:
    return parse_event(json.dumps(make_event("post-9", image_bytes=b"x", claim=claim)).encode())


def verdict_for(
    pred: Prediction,
    claim: tuple[float, float] | None = PARIS,
    policy: VerdictPolicy | None = None,
    places: PlaceNames | None = None,
) -> dict[str, Any]:
    return build_verdict(
        event_with(claim),
        pred,
        policy or RULE,
        places,
        cache_hit="exact",
        image_sha256=SHA,
        timings_ms={"total": 1.5},
        provenance=samples.provenance(),
    )


def unsure() -> Prediction:
    """Mass spread over eight places; the best guess (Paris) has only 13 %."""
    spread = [LAGOS, NEW_YORK, TOKYO, SYDNEY, (55.75, 37.62), (-23.55, -46.63), (28.61, 77.21)]
    return prediction([(PARIS, 0.13), *[(point, 0.124) for point in spread]])


def test_a_claim_far_from_a_confident_prediction_is_a_mismatch() -> None:
    check = consistency(confident_paris(), claim_at(FAR_SOUTH), RULE)
    assert check["distance_km"] == pytest.approx(5000, abs=1)
    assert check["mass_within_200_km"] == 0.0
    assert check["location_mismatch"] is True
    assert (check["claim_source"], check["threshold_km"], check["max_mass"]) == ("event", 750, 0.1)


def test_a_claim_at_the_predicted_point_is_no_mismatch() -> None:
    check = consistency(confident_paris(), claim_at(PARIS), RULE)
    assert check["distance_km"] == 0.0
    assert check["mass_within_25_km"] == pytest.approx(0.94)
    assert check["location_mismatch"] is False


def test_an_unsure_model_accuses_nobody() -> None:
    pred = unsure()
    assert contract.errors(contract.PREDICTION, pred) == []
    check = consistency(pred, claim_at(FAR_SOUTH), RULE)
    assert check["distance_km"] == pytest.approx(5000, abs=1)
    assert check["location_mismatch"] is False  # 12.4 % of the mass lies near the claim
    bolder = VerdictPolicy(mismatch_max_mass=0.2)  # accuses unless 20 % lies near the claim
    assert consistency(pred, claim_at(FAR_SOUTH), bolder)["location_mismatch"] is True


def test_a_claim_within_the_threshold_is_no_mismatch() -> None:
    near = (PARIS[0] - 6.0, PARIS[1])  # 667 km away, and no mass near it
    check = consistency(confident_paris(), claim_at(near), RULE)
    assert check["mass_within_200_km"] == 0.0
    assert check["location_mismatch"] is False
    assert consistency(confident_paris(), claim_at(near), VerdictPolicy(mismatch_threshold_km=500))[
        "location_mismatch"
    ]


def test_a_verdict_checks_the_event_claim_and_the_exif_claim() -> None:
    verdict = verdict_for(prediction([(PARIS, 0.9), (TOKYO, 0.1)], exif=NEW_YORK), claim=PARIS)
    assert contract.errors(contract.VERDICT, verdict) == []
    checks = {c["claim_source"]: c for c in verdict["consistency"]}
    assert checks["event"]["location_mismatch"] is False
    assert checks["exif"]["location_mismatch"] is True
    assert checks["exif"]["distance_km"] == pytest.approx(haversine_km(*PARIS, *NEW_YORK), abs=1e-3)
    assert verdict_for(confident_paris(), claim=None)["consistency"] == []


def test_a_verdict_carries_the_event_and_the_top_k_cells() -> None:
    pred = confident_paris()
    verdict = verdict_for(pred, policy=VerdictPolicy(top_k=2))
    assert (verdict["post_id"], verdict["model_version"]) == ("post-9", MODEL_VERSION)
    assert (verdict["cache_hit"], verdict["image_sha256"]) == ("exact", SHA)
    assert verdict["location"]["cells"] == pred["cells"][:2]
    assert verdict["location"]["best_guess"] == {**pred["best_guess"], "place": None}
    # No floor: the precision is the best cell's own extent (a level-13 cell: under 2 km).
    assert verdict["location"]["precision_km"] == pytest.approx(1.897, abs=0.001)
    assert verdict["location"]["precision_floor_km"] == 0.0
    assert verdict["scene"]["s3"]["label"] == "urban"


def test_a_post_without_an_event_gets_the_verdict_its_event_would() -> None:
    # `locate` has a photo and a claim, no event: the same function answers both alike.
    pred = prediction([(PARIS, 0.9), (TOKYO, 0.1)], exif=NEW_YORK)
    policy = VerdictPolicy(min_precision_km=5.0)
    event = event_with(FAR_SOUTH)
    post = Post(event.id, event.source, event.post_id, claim_at(FAR_SOUTH))
    verdicts = [
        build_verdict(
            asked,
            pred,
            policy,
            None,
            cache_hit=False,
            image_sha256=SHA,
            timings_ms={"total": 2.0},
            provenance=samples.provenance(),
        )
        for asked in (event, post)
    ]
    for verdict in verdicts:
        assert contract.errors(contract.VERDICT, verdict) == []
        del verdict["produced_at"]  # type: ignore[misc]
    assert verdicts[0] == verdicts[1]
    assert [c["claim_source"] for c in verdicts[1]["consistency"]] == ["event", "exif"]
    assert verdicts[1]["id"] == event.id and verdicts[1]["post_id"] == "post-9"


def test_a_checked_reply_keeps_no_exif_position_finer_than_the_floor() -> None:
    reply = dict(prediction([(PARIS, 1.0)], exif=NEW_YORK))
    checked = checked_reply(reply, 25.0)
    lat, lon = coarsen(*NEW_YORK, 25.0)
    assert checked["exif_location"] == {"lat": lat, "lon": lon}
    assert checked["cells"] == reply["cells"]  # the model's cells are not personal data
    assert checked_reply(reply, 0.0)["exif_location"] == {"lat": NEW_YORK[0], "lon": NEW_YORK[1]}
    with pytest.raises(ContractError):
        checked_reply({**reply, "cells": "not a list"}, 25.0)


def points(node: Any) -> Iterator[tuple[float, float]]:
    """Every (lat, lon) pair anywhere in a verdict."""
    if isinstance(node, dict):
        if "lat" in node and "lon" in node:
            yield node["lat"], node["lon"]
        for value in node.values():
            yield from points(value)
    elif isinstance(node, list):
        for value in node:
            yield from points(value)


class RecordingPlaces(PlaceNames):
    """Place names that remember where they were asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[float, float]] = []

    def lookup(self, lat: float, lon: float) -> dict[str, str] | None:
        self.asked.append((lat, lon))
        return {"name": "Somewhere", "admin1": "Region", "country_code": "XX"}


@pytest.mark.parametrize("floor_km", [1.0, 25.0, 200.0])
def test_the_precision_floor_coarsens_every_reported_point_and_cell(floor_km: float) -> None:
    pred = prediction([(PARIS, 0.6), ((48.86, 2.36), 0.3), (TOKYO, 0.1)], exif=NEW_YORK)
    pristine = copy.deepcopy(pred)
    places = RecordingPlaces()
    verdict = verdict_for(pred, FAR_SOUTH, VerdictPolicy(min_precision_km=floor_km), places)
    assert contract.errors(contract.VERDICT, verdict) == []
    assert pred == pristine  # the prediction (cached as it is) keeps its true points

    reported = list(points(verdict))
    assert len(reported) == 3 + 1 + 2  # cells, best guess, two claims
    for lat, lon in reported:  # each a centre of the floor's grid: coarsening moves it no more
        assert coarsen(lat, lon, floor_km) == (lat, lon)
    assert places.asked == [coarsen(*PARIS, floor_km)]

    level = s2_level_for(floor_km)
    location = verdict["location"]
    for shown, true in zip(
        [*location["cells"], location["best_guess"]],
        [*pred["cells"], pred["best_guess"]],
        strict=True,
    ):
        assert shown["level"] == level
        # The true cell's ancestor (parent_token agrees with s2sphere: test_geo).
        assert shown["token"] == parent_token(true["token"], level)
        assert shown["probability"] == true["probability"]

    # Distances come from the coarsened claims and are told no finer than the floor: a metre-
    # exact distance from a known point would give away where in its square the claim lies.
    event_check, exif_check = verdict["consistency"]
    for check, true_claim in ((event_check, FAR_SOUTH), (exif_check, NEW_YORK)):
        coarse = coarsen(*true_claim, floor_km)
        assert (check["lat"], check["lon"]) == coarse
        assert check["distance_km"] / floor_km == pytest.approx(
            round(haversine_km(*coarse, *PARIS) / floor_km)
        )
    assert event_check["location_mismatch"] is True
    assert exif_check["location_mismatch"] is True
    assert verdict["location"]["precision_floor_km"] == floor_km
    assert verdict["location"]["precision_km"] >= floor_km
    for shown in [*location["cells"], location["best_guess"]]:  # snapping widens each cell
        assert shown["radius_km"] >= floor_km * 0.7


def demo_fine_cells() -> list[dict[str, Any]]:
    """The fine cells of the demo archive in model_store/ (its metadata; no torch needed)."""
    import zipfile

    from tests.repo import REPO_ROOT

    archives = sorted((REPO_ROOT / "model_store").glob("*.mar"))
    if not archives:
        pytest.skip("no archive in model_store/")
    with zipfile.ZipFile(archives[0]) as mar:
        fine = json.loads(mar.read("metadata.json"))["partitions"][-1]
    return [
        {"token": t, "level": lv, "lat": lat, "lon": lon}
        for t, lv, lat, lon in zip(
            fine["tokens"], fine["levels"], fine["lat_mean"], fine["lon_mean"], strict=True
        )
    ]


def true_radius_km(cell: dict[str, Any]) -> float:
    """From the cell's point to its farthest corner (s2_reference, computed with s2sphere)."""
    if cell["token"] not in DEMO_CELL_RADII_KM:
        raise KeyError(f"{cell['token']}: model_store/ changed; update tests/service/s2_reference")
    return DEMO_CELL_RADII_KM[cell["token"]]


@pytest.mark.parametrize("with_radius", [True, False], ids=["reply-radius", "older-archive"])
def test_no_verdict_says_0_km_for_a_real_cell_wider_than_1_km(with_radius: bool) -> None:
    for cell in demo_fine_cells():
        radius = true_radius_km(cell)
        sure = cell | {"probability": 1.0} | ({"radius_km": radius} if with_radius else {})
        pred = prediction([(PARIS, 1.0)])  # its cells and best guess replaced just below
        pred["cells"], pred["best_guess"] = [sure], dict(sure)  # type: ignore[typeddict-item]
        pred["confidence"] |= {"radius_50_km": 0.0, "radius_90_km": 0.0}  # an old reply's zeros
        location = verdict_for(pred)["location"]
        assert radius > 1.0
        assert location["precision_km"] >= radius * 0.999, cell["token"]
        assert location["confidence"]["radius_50_km"] >= radius * 0.999
        assert location["confidence"]["radius_90_km"] >= radius * 0.999
