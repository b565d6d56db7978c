"""Replies of the handler: the contract's fields, computed right on a hand-made distribution."""

from __future__ import annotations

import numpy as np
import pytest

from geoverdict_service.contract import PREDICTION, errors
from geoverdict_training import s2
from geoverdict_training.cells import Partition
from geoverdict_training.evaluation import haversine_km
from geoverdict_training.replies import ImageFacts, ReplySettings, error_reply, prediction_reply
from geoverdict_training.scene_names import scene_names

POINTS = [(48.85, 2.35), (48.90, 2.40), (40.71, -74.0), (35.68, 139.65)]


def _fine() -> Partition:
    lat = np.array([p[0] for p in POINTS])
    lon = np.array([p[1] for p in POINTS])
    return Partition(
        name="cells_fine",
        cell_ids=s2.parent_ids(s2.leaf_cell_ids(lat, lon), 10),
        counts=np.ones(4, dtype=np.int64),
        lat_mean=lat,
        lon_mean=lon,
        num_images=4,
    )


FACTS = ImageFacts(640, 480, "JPEG", (48.8, 2.3), 1.5)


def _reply(p: list[float], settings: ReplySettings | None = None) -> dict[str, object]:
    scenes = {
        "s3": np.array([0.1, 0.2, 0.7], np.float32),
        "s16": np.full(16, 1 / 16, np.float32),
        "s365": np.full(365, 1 / 365, np.float32),
    }
    return prediction_reply(
        "m-1", _fine(), np.array(p), scenes, scene_names(), FACTS, 12.0, settings
    )


def test_a_prediction_fits_the_contract() -> None:
    reply = _reply([0.6, 0.3, 0.06, 0.04])
    assert errors(PREDICTION, reply) == []
    assert reply["model_version"] == "m-1"
    assert reply["scene"]["s3"] == {"label": "urban", "index": 2, "probability": pytest.approx(0.7)}
    assert len(reply["scene"]["s16"]) == 5 and len(reply["scene"]["s365"]) == 5
    assert reply["image"] == {"width": 640, "height": 480, "format": "JPEG"}
    assert reply["exif_location"] == {"lat": 48.8, "lon": 2.3}
    assert reply["timings_ms"] == {"decode": 1.5, "inference": 12.0}


def test_cells_are_listed_by_probability_until_99_percent() -> None:
    reply = _reply([0.6, 0.3, 0.095, 0.005])
    assert [c["probability"] for c in reply["cells"]] == pytest.approx([0.6, 0.3, 0.095])
    assert reply["cells_mass"] == pytest.approx(0.995)
    assert reply["best_guess"]["lat"] == 48.85 and reply["best_guess"]["level"] == 10
    capped = _reply([0.6, 0.3, 0.095, 0.005], ReplySettings(max_cells=2))
    assert len(capped["cells"]) == 2 and capped["cells_mass"] == pytest.approx(0.9)


def test_confidence_radii_hold_half_and_nine_tenths_of_the_mass() -> None:
    reply = _reply([0.4, 0.2, 0.3, 0.1])
    confidence = reply["confidence"]
    near = float(haversine_km(48.85, 2.35, 48.90, 2.40))
    far = float(haversine_km(48.85, 2.35, 40.71, -74.0))
    assert confidence["top1"] == pytest.approx(0.4)
    assert confidence["radius_50_km"] == pytest.approx(near)  # 0.4 + 0.2 within Paris
    assert confidence["radius_90_km"] == pytest.approx(far)  # + New York's 0.3
    p = np.array([0.4, 0.2, 0.3, 0.1])
    assert confidence["entropy"] == pytest.approx(float(-(p * np.log(p)).sum()))


def test_a_certain_prediction_has_zero_radius() -> None:
    confidence = _reply([1.0, 0.0, 0.0, 0.0])["confidence"]
    assert confidence["radius_50_km"] == 0.0 and confidence["radius_90_km"] == 0.0
    assert confidence["entropy"] == 0.0


def test_error_replies_carry_the_version_and_a_contract_code() -> None:
    reply = error_reply("m-1", "truncated", "ends early")
    assert errors(PREDICTION, reply) == []
    assert reply == {
        "model_version": "m-1",
        "error": {"code": "truncated", "message": "ends early"},
    }
    assert error_reply("m-1", "unreadable", "x")["error"]["code"] == "undecodable"
    assert error_reply("m-1", "weird", "x")["error"]["code"] == "internal"
