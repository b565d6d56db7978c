"""Model predictions as the TorchServe handler answers them, built for the unit tests."""

from __future__ import annotations

from typing import Any

from geoverdict_common.contract_types import Prediction, Provenance
from tests.service.s2_reference import LEVEL_13_TOKENS

PARIS = (48.8566, 2.3522)
NEW_YORK = (40.7128, -74.0060)
TOKYO = (35.6762, 139.6503)
SYDNEY = (-33.8688, 151.2093)
MODEL_VERSION = "unit-0123abcd"


def cell(lat: float, lon: float, probability: float) -> dict[str, Any]:
    """A prediction cell: the level-13 S2 cell holding (lat, lon), one of s2_reference's."""
    if (lat, lon) not in LEVEL_13_TOKENS:
        raise KeyError(f"no S2 token for {(lat, lon)}: add it to tests/service/s2_reference.py")
    return {
        "token": LEVEL_13_TOKENS[lat, lon],
        "level": 13,
        "lat": lat,
        "lon": lon,
        "probability": probability,
    }


def prediction(
    cells: list[tuple[tuple[float, float], float]],
    exif: tuple[float, float] | None = None,
    scene: str = "urban",
) -> Prediction:
    """A handler reply whose cells are ((lat, lon), probability), most probable first."""
    built = [cell(lat, lon, p) for (lat, lon), p in cells]
    return {
        "model_version": MODEL_VERSION,
        "cells": built,
        "cells_mass": round(sum(c["probability"] for c in built), 6),
        "best_guess": dict(built[0]),
        "scene": {
            "s3": {"label": scene, "index": 2, "probability": 0.8},
            "s16": [],
            "s365": [],
        },
        "confidence": {
            "top1": built[0]["probability"],
            "entropy": 0.4,
            "radius_50_km": 12.0,
            "radius_90_km": 480.0,
        },
        "image": {"width": 64, "height": 48, "format": "JPEG"},
        "exif_location": {"lat": exif[0], "lon": exif[1]} if exif else None,
        "timings_ms": {"decode": 0.4, "inference": 7.5},
    }


def confident_paris() -> Prediction:
    """A model sure of Paris, with a little mass on three other cities."""
    return prediction([(PARIS, 0.94), (NEW_YORK, 0.03), (TOKYO, 0.02), (SYDNEY, 0.01)])


def provenance(**fields: Any) -> Provenance:
    """A verdict's provenance as a photo without history gets it (index asked, nothing found,
    no Content Credentials, no capture time), `fields` replacing any of it."""
    from geoverdict_service.provenance.credentials import ABSENT
    from geoverdict_service.provenance.report import ProvenancePolicy, provenance_report

    report = provenance_report(
        fingerprint=None,
        index="ok",
        match=None,
        credentials=ABSENT,
        exif_capture=None,
        claim=None,
        posted_at=None,
        policy=ProvenancePolicy(),
    )
    return {**report, **fields}  # type: ignore[typeddict-item]
