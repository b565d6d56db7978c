"""Verdicts: a model prediction plus the event's claims, turned into the published answer.

The one path from a model reply to a verdict, for the stream (pipeline/predictions.py and
pipeline/verdicts.py) and for `geoverdict locate` alike: `checked_reply` (the contract and the
privacy floor), then `build_verdict`, which the verdict stage's `Verdicts.verdict` alone calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from geoverdict_common import contract
from geoverdict_common.contract_types import (
    BestGuess,
    CacheHit,
    Cell,
    Consistency,
    Location,
    Prediction,
    Provenance,
    Verdict,
)
from geoverdict_common.distances import haversine_km
from geoverdict_service.events import Claim, Post
from geoverdict_service.geo import (
    PlaceNames,
    cell_radius_km,
    coarsen,
    masses_within,
    parent_token,
    s2_level_for,
)

# The mismatch flag's defaults, chosen on photos the demo model never saw (docs/verdicts.md):
# the setting that detects the most false claims while flagging at most 5 % of true ones. With
# calibrated probabilities they read: flag a claim only when the model puts less than 0.75 %
# probability within 1,500 km of it (and its best guess is farther than that).
MISMATCH_THRESHOLD_KM = 1500.0
MISMATCH_MAX_MASS = 0.0075


@dataclass(frozen=True)
class VerdictPolicy:
    """How predictions become verdicts (from Settings)."""

    top_k: int = 5
    mismatch_threshold_km: float = MISMATCH_THRESHOLD_KM
    mismatch_max_mass: float = MISMATCH_MAX_MASS
    min_precision_km: float = 0.0


def consistency(prediction: Prediction, claim: Claim, policy: VerdictPolicy) -> Consistency:
    """How well a claimed location agrees with the predicted distribution.

    `probability_within_threshold` is the model's (calibrated) probability that the photo was
    taken within the threshold of the claim, each cell counted by the share of it inside. The
    mismatch flag needs both: the claim is farther than the threshold from the best guess, and
    that probability is below `mismatch_max_mass`. An unsure model (mass spread widely, or on
    wide cells) therefore does not accuse a post.
    """
    cells = prediction["cells"]
    best = prediction["best_guess"]
    distance = float(haversine_km(claim.lat, claim.lon, best["lat"], best["lon"]))
    within_25, within_200, near_threshold = masses_within(
        cells, claim.lat, claim.lon, (25.0, 200.0, policy.mismatch_threshold_km)
    )
    return {
        "claim_source": claim.source,
        "lat": claim.lat,
        "lon": claim.lon,
        "distance_km": round(distance, 3),
        "mass_within_25_km": round(within_25, 6),
        "mass_within_200_km": round(within_200, 6),
        "probability_within_threshold": round(near_threshold, 6),
        "location_mismatch": bool(
            distance > policy.mismatch_threshold_km and near_threshold < policy.mismatch_max_mass
        ),
        "threshold_km": policy.mismatch_threshold_km,
        "max_mass": policy.mismatch_max_mass,
    }


def coarse_claim(claim: Claim, floor_km: float) -> Claim:
    """The claim as precise as the floor allows (unchanged without a floor)."""
    lat, lon = coarsen(claim.lat, claim.lon, floor_km)
    return Claim(lat, lon, claim.source)


def floor_distance(distance_km: float, floor_km: float) -> float:
    """A distance rounded to a multiple of the floor (to the metre without one)."""
    if floor_km <= 0:
        return round(distance_km, 3)
    return round(round(distance_km / floor_km) * floor_km, 3)


def private_prediction(prediction: Prediction, floor_km: float) -> Prediction:
    """The prediction as it may be kept (cached) and used: the photo's GPS EXIF position, a
    claim of sorts, coarsened to the floor. The model's cells are not personal data."""
    exif = prediction.get("exif_location")
    if floor_km <= 0 or not exif:
        return prediction
    lat, lon = coarsen(float(exif["lat"]), float(exif["lon"]), floor_km)
    private = prediction.copy()
    private["exif_location"] = {"lat": lat, "lon": lon}
    return private


def checked_reply(reply: Any, floor_km: float) -> Prediction:
    """A model reply as a verdict (and the cache) may use it: checked against the prediction
    contract (ContractError where it breaks it), its GPS EXIF position no finer than the floor."""
    return private_prediction(contract.checked_prediction(reply), floor_km)


def _snap_km(precision_km: float) -> float:
    """How far the precision floor's snapping can move a point: half a grid square's diagonal."""
    return precision_km * math.sqrt(0.5) if precision_km > 0 else 0.0


def _floor_cell(cell: Cell, precision_km: float) -> Cell:
    """A cell reported no finer than the precision floor: point snapped, token coarsened.
    A copy: a cell is flat, and the prediction (maybe cached) stays as it was."""
    out = cell.copy()
    if precision_km <= 0:
        return out
    out["lat"], out["lon"] = coarsen(cell["lat"], cell["lon"], precision_km)
    level = min(int(cell["level"]), s2_level_for(precision_km))
    out["token"], out["level"] = parent_token(cell["token"], level), level
    # The snapped point is farther from some of the cell: its extent grows by the snap.
    out["radius_km"] = round(cell_radius_km(cell) + _snap_km(precision_km), 3)
    return out


def location_of(
    prediction: Prediction, policy: VerdictPolicy, places: PlaceNames | None
) -> Location:
    """A verdict's `location`: what the prediction says of where, no finer than the floor. It
    depends on the prediction and the policy alone, so a consumer may keep it for a photo it
    answers again (the cached path)."""
    floor = policy.min_precision_km
    # The reported point stands for its whole cell: a photo taken anywhere in it can lie
    # this far away. Never less than the floor, never 0 km for a cell wider than a point.
    precision = max(floor, cell_radius_km(prediction["best_guess"]) + _snap_km(floor))
    confidence = prediction["confidence"].copy()
    for key in ("radius_50_km", "radius_90_km"):
        confidence[key] = round(max(confidence[key] + _snap_km(floor), precision), 3)
    best_cell = _floor_cell(prediction["best_guess"], floor)
    place = places.lookup(best_cell["lat"], best_cell["lon"]) if places else None
    return {
        "cells": [_floor_cell(c, floor) for c in prediction["cells"][: policy.top_k]],
        "best_guess": BestGuess(**best_cell, place=place),
        "confidence": confidence,
        "precision_km": round(precision, 3),
        "precision_floor_km": floor,
    }


def build_verdict(
    post: Post,
    prediction: Prediction,
    policy: VerdictPolicy,
    places: PlaceNames | None,
    *,
    cache_hit: CacheHit,
    image_sha256: str,
    timings_ms: dict[str, Any],
    provenance: Provenance,
    location: Location | None = None,
) -> Verdict:
    """The verdict for one post from its checked prediction (`checked_reply`) and its photo's
    provenance (provenance/report.py), valid against schemas/verdict.schema.json. Every claim
    is checked: the post's, the photo's GPS EXIF and its Content Credentials' capture place.
    `location`: location_of(prediction, policy, places) when the caller kept it."""
    floor = policy.min_precision_km
    claims: list[Claim] = [post.claim] if post.claim else []
    exif = prediction.get("exif_location")
    if exif:
        claims.append(Claim(float(exif["lat"]), float(exif["lon"]), "exif"))
    signed_place = provenance["c2pa"]["capture_location"]
    if signed_place is not None:  # already as coarse as the floor
        claims.append(Claim(signed_place["lat"], signed_place["lon"], "c2pa"))
    # Privacy: a claim (often the photo's exact GPS) is coarsened before anything is derived
    # from it, and its distance is told no finer than the floor either: a metre-exact distance
    # from a known best guess would narrow the floor's square down to a thin ring.
    checks = [consistency(prediction, coarse_claim(c, floor), policy) for c in claims]
    for check in checks:
        check["distance_km"] = floor_distance(check["distance_km"], floor)
    return {
        "id": post.id,
        "post_id": post.post_id,
        "source": post.source,
        "model_version": prediction["model_version"],
        "produced_at": datetime.now(UTC).isoformat(),
        "image_sha256": image_sha256,
        "location": location or location_of(prediction, policy, places),
        "scene": prediction["scene"],
        "consistency": checks,
        "cache_hit": cache_hit,
        "provenance": provenance,
        "timings_ms": timings_ms,
    }
