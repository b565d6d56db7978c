"""Replies of the handler: the contract's fields, computed right on a hand-made distribution,
and radii that count each cell's extent on the demo model's real cells."""

from __future__ import annotations

import numpy as np
import pytest

from geoverdict_common.contract import PREDICTION, errors
from geoverdict_common.distances import haversine_km
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.inference.best_guess import GuessRule
from geoverdict_training.serving.bundle import read_bundle
from geoverdict_training.serving.replies import (
    ImageFacts,
    ReplySettings,
    error_reply,
    prediction_reply,
)
from geoverdict_training.vocabulary import scene_names
from tests.repo import REPO_ROOT

POINTS = [(48.85, 2.35), (48.90, 2.40), (40.71, -74.0), (35.68, 139.65)]
DEMO_ARCHIVE = REPO_ROOT / "model_store" / "geoverdict.mar"


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


def test_the_best_guess_is_the_nearest_on_average_not_the_most_probable_cell() -> None:
    fine = _fine()
    # New York is the top cell, but Paris is nearer on average to where the mass lies.
    reply = _reply([0.3, 0.0, 0.36, 0.34])
    assert reply["cells"][0]["token"] == fine.tokens[2]
    best = reply["best_guess"]
    assert best["token"] == fine.tokens[0] and best["probability"] == pytest.approx(0.3)
    assert haversine_km(best["lat"], best["lon"], *POINTS[0]) < 2 * fine.radius_km[0]
    assert best["radius_km"] == pytest.approx(fine.far_km(best["lat"], best["lon"])[0])
    # The radii are measured from the best guess: Paris holds 30 %, New York brings 66 %.
    reach = fine.far_km(best["lat"], best["lon"])
    assert reply["confidence"]["radius_50_km"] == pytest.approx(reach[2])
    assert errors(PREDICTION, reply) == []
    # The rule is a reply setting: the most mass within 1,000 km is New York's.
    settings = ReplySettings(best_guess=GuessRule.parse("mass_within:1000"))
    assert _reply([0.3, 0.0, 0.36, 0.34], settings)["best_guess"]["token"] == fine.tokens[2]


def test_confidence_radii_hold_half_and_nine_tenths_of_the_mass_cells_included() -> None:
    fine = _fine()
    reply = _reply([0.4, 0.2, 0.3, 0.1])
    confidence = reply["confidence"]
    # How far each cell reaches from the best guess (Paris): its farthest corner.
    reach = fine.far_km(48.85, 2.35)
    near = float(haversine_km(48.85, 2.35, 48.90, 2.40))
    far = float(haversine_km(48.85, 2.35, 40.71, -74.0))
    assert near < reach[1] < near + 2 * fine.radius_km[1]
    assert far < reach[2] < far + 2 * fine.radius_km[2]
    assert confidence["top1"] == pytest.approx(0.4)
    assert confidence["radius_50_km"] == pytest.approx(reach[1])  # 0.4 + 0.2 within Paris
    assert confidence["radius_90_km"] == pytest.approx(reach[2])  # + New York's 0.3
    p = np.array([0.4, 0.2, 0.3, 0.1])
    assert confidence["entropy"] == pytest.approx(float(-(p * np.log(p)).sum()))


def test_every_listed_cell_tells_how_far_its_photos_can_lie() -> None:
    fine = _fine()
    reply = _reply([0.6, 0.3, 0.06, 0.04])
    for cell in reply["cells"]:
        k = fine.tokens.index(cell["token"])
        assert cell["radius_km"] == pytest.approx(fine.radius_km[k])
        assert 2 < cell["radius_km"] < 30  # a level-10 cell is 7-10 km wide
    best = reply["best_guess"]  # inside the top cell here, its extent seen from the guess
    assert best["token"] == reply["cells"][0]["token"]
    assert best["radius_km"] == pytest.approx(fine.far_km(best["lat"], best["lon"])[0])


def test_a_certain_prediction_has_the_radius_of_its_cell_not_zero() -> None:
    confidence = _reply([1.0, 0.0, 0.0, 0.0])["confidence"]
    radius = float(_fine().radius_km[0])
    assert radius > 1.0
    assert confidence["radius_50_km"] == pytest.approx(radius)
    assert confidence["radius_90_km"] == pytest.approx(radius)
    assert confidence["entropy"] == 0.0


def _cell_width_km(fine: Partition, k: int) -> float:
    lat, lon = fine.vertices
    return float(haversine_km(lat[k, 0], lon[k, 0], lat[k, 2], lon[k, 2]))  # a diagonal


def test_no_reply_of_the_demo_model_says_0_km_for_a_cell_wider_than_1_km() -> None:
    if not DEMO_ARCHIVE.is_file():
        pytest.skip(f"no demo archive at {DEMO_ARCHIVE}")
    fine = read_bundle(DEMO_ARCHIVE).partitions[-1]
    names = scene_names()
    scenes = {"s3": np.array([0.2, 0.3, 0.5], np.float32)}
    rng = np.random.default_rng(0)
    for k in range(len(fine)):
        certain = np.zeros(len(fine))
        certain[k] = 1.0  # all the mass in one cell: the 0 km answer
        spread = rng.dirichlet(np.full(len(fine), 0.3))  # mass spread over many cells
        for p in (certain, spread):
            reply = prediction_reply("demo", fine, p, scenes, names, FACTS, 1.0)
            for cell in reply["cells"]:
                if _cell_width_km(fine, fine.tokens.index(cell["token"])) > 1.0:
                    assert cell["radius_km"] > 0.5, cell
            guess = reply["best_guess"]
            if _cell_width_km(fine, fine.tokens.index(guess["token"])) > 1.0:
                assert reply["confidence"]["radius_50_km"] >= guess["radius_km"] > 0.5
                assert reply["confidence"]["radius_90_km"] >= guess["radius_km"]
            assert errors(PREDICTION, reply) == []


def test_error_replies_carry_the_version_and_a_contract_code() -> None:
    reply = error_reply("m-1", "truncated", "ends early")
    assert errors(PREDICTION, reply) == []
    assert reply == {
        "model_version": "m-1",
        "error": {"code": "truncated", "message": "ends early"},
    }
    assert error_reply("m-1", "unreadable", "x")["error"]["code"] == "undecodable"
    assert error_reply("m-1", "weird", "x")["error"]["code"] == "internal"
