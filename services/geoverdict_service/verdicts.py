"""Verdicts: a model prediction plus the event's claims, turned into the published answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from geoverdict_service.contract_types import BestGuess, Cell, Consistency, Prediction, Verdict
from geoverdict_service.events import Claim, ImageEvent
from geoverdict_service.geo import (
    PlaceNames,
    coarsen,
    haversine_km,
    mass_within,
    parent_token,
    s2_level_for,
)


@dataclass(frozen=True)
class VerdictPolicy:
    """How predictions become verdicts (from Settings)."""

    top_k: int = 5
    mismatch_threshold_km: float = 750.0
    mismatch_max_mass: float = 0.1
    min_precision_km: float = 0.0


def consistency(prediction: Prediction, claim: Claim, policy: VerdictPolicy) -> Consistency:
    """How well a claimed location agrees with the predicted distribution.

    The mismatch flag needs both: the claim is farther than the threshold from the best guess,
    and the model puts less than `mismatch_max_mass` of its probability within the threshold
    of the claim. An unsure model (mass spread widely) therefore does not accuse a post.
    """
    cells = prediction["cells"]
    best = prediction["best_guess"]
    distance = haversine_km(claim.lat, claim.lon, best["lat"], best["lon"])
    near_threshold = mass_within(cells, claim.lat, claim.lon, policy.mismatch_threshold_km)
    return {
        "claim_source": claim.source,
        "lat": claim.lat,
        "lon": claim.lon,
        "distance_km": round(distance, 3),
        "mass_within_25_km": round(mass_within(cells, claim.lat, claim.lon, 25.0), 6),
        "mass_within_200_km": round(mass_within(cells, claim.lat, claim.lon, 200.0), 6),
        "location_mismatch": bool(
            distance > policy.mismatch_threshold_km and near_threshold < policy.mismatch_max_mass
        ),
        "threshold_km": policy.mismatch_threshold_km,
        "max_mass": policy.mismatch_max_mass,
    }


def _floor_cell(cell: Cell, precision_km: float) -> Cell:
    """A cell reported no finer than the precision floor: point snapped, token coarsened.
    A copy: a cell is flat, and the prediction (maybe cached) stays as it was."""
    out = cell.copy()
    if precision_km <= 0:
        return out
    out["lat"], out["lon"] = coarsen(cell["lat"], cell["lon"], precision_km)
    level = min(int(cell["level"]), s2_level_for(precision_km))
    out["token"], out["level"] = parent_token(cell["token"], level), level
    return out


def build_verdict(
    event: ImageEvent,
    prediction: Prediction,
    policy: VerdictPolicy,
    places: PlaceNames | None,
    *,
    cache_hit: bool,
    image_sha256: str,
    timings_ms: dict[str, Any],
) -> Verdict:
    """The verdict for one event (valid against schemas/verdict.schema.json)."""
    claims: list[Claim] = [event.claim] if event.claim else []
    exif = prediction.get("exif_location")
    if exif:
        claims.append(Claim(float(exif["lat"]), float(exif["lon"]), "exif"))
    checks = [consistency(prediction, c, policy) for c in claims]

    floor = policy.min_precision_km
    best_cell = _floor_cell(prediction["best_guess"], floor)
    place = places.lookup(best_cell["lat"], best_cell["lon"]) if places else None
    best = BestGuess(**best_cell, place=place)
    if floor > 0:
        for check in checks:  # the claim itself is as precise as the person who made it
            check["lat"], check["lon"] = coarsen(check["lat"], check["lon"], floor)
    return {
        "id": event.id,
        "post_id": event.post_id,
        "source": event.source,
        "model_version": prediction["model_version"],
        "produced_at": datetime.now(UTC).isoformat(),
        "image_sha256": image_sha256,
        "location": {
            "cells": [_floor_cell(c, floor) for c in prediction["cells"][: policy.top_k]],
            "best_guess": best,
            "confidence": prediction["confidence"],
            "precision_km": floor,
        },
        "scene": prediction["scene"],
        "consistency": checks,
        "cache_hit": cache_hit,
        "timings_ms": timings_ms,
    }
