"""Measuring the location_mismatch flag: true claims against false ones, with the service's rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geoverdict.mismatch import Photo, false_claims, load, measure, roc_auc
from geoverdict_common.distances import haversine_km
from tests.service import samples

CITIES = [
    samples.PARIS,
    samples.NEW_YORK,
    samples.TOKYO,
    samples.SYDNEY,
    (-33.9, 18.4),
    (55.75, 37.62),
    (-23.55, -46.63),
    (28.61, 77.21),
]


def photos(sure: bool) -> list[Photo]:
    """A photo in each city; a model that is sure of the truth, or that always says Paris."""
    out = []
    for i, (lat, lon) in enumerate(CITIES):
        where = (lat, lon) if sure else samples.PARIS
        reply = dict(samples.prediction([(where, 1.0)]))
        out.append(Photo(f"p{i}", lat, lon, reply))
    return out


def test_roc_auc_counts_pairs_ranked_right_and_ties_as_half() -> None:
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.5], [0.5, 0.5]) == 0.5


def test_false_claims_are_far_from_the_photo() -> None:
    sample = photos(sure=True)
    for photo, (lat, lon) in zip(sample, false_claims(sample, 2500.0), strict=True):
        assert haversine_km(photo.lat, photo.lon, lat, lon) >= 2500.0


def test_a_model_that_knows_flags_every_false_claim_and_no_true_one() -> None:
    result = measure(photos(sure=True))
    assert result.chosen is not None
    assert result.chosen.false_flag_rate == 0.0
    assert result.chosen.detection_rate == 1.0
    assert all(row.auc == 1.0 for row in result.rows)
    assert "**(default)**" in result.table()


def test_a_model_that_always_says_paris_is_held_to_the_false_flag_limit() -> None:
    result = measure(photos(sure=False), max_false_flags=0.05)
    # It accuses the honest posts far from Paris (all but Paris and Moscow, 2,486 km away, at
    # the 2,500 km threshold): no setting keeps false flags under 5 %.
    assert result.chosen is None
    assert min(row.false_flag_rate for row in result.rows) == pytest.approx(6 / 8)


def test_error_replies_are_left_out_of_the_measurement(tmp_path: Path) -> None:
    path = tmp_path / "val.jsonl"
    good = {"id": "a", "lat": 1.0, "lon": 2.0, "reply": dict(samples.confident_paris())}
    bad = {"id": "b", "lat": 1.0, "lon": 2.0, "reply": {"error": {"code": "undecodable"}}}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    assert [p.id for p in load(path)] == ["a"]


def test_a_file_that_is_not_predictions_is_one_line_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from geoverdict.cli import main

    path = tmp_path / "val.jsonl"
    path.write_text('{"id": "a", "lat": 1, "lon": 2, "reply": {}}\n{"id": "b"}\n')
    assert main(["mismatch", "--predictions", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: not a line of" in err
