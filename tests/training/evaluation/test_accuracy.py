"""Accuracy at the literature's thresholds; the published GeoEstimation tables from their files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from geoverdict_training.evaluation.accuracy import (
    THRESHOLDS_KM,
    evaluate_coordinates,
    evaluate_distances,
    read_predictions_csv,
)
from geoverdict_training.exceptions import DataFileError

HEADER = "img_id,gt_lat,predicted_lat,gt_long,predicted_long,great_circle_distance\n"


def test_accuracy_counts_distances_up_to_and_including_each_threshold() -> None:
    result = evaluate_distances([0.5, 1.0, 25.0, 25.1, 3000.0])
    assert result.n == 5
    assert result.accuracy == {1: 40.0, 25: 60.0, 200: 80.0, 750: 80.0, 2500: 80.0}
    assert result.median_km == 25.0
    assert result.mean_km == pytest.approx((0.5 + 1 + 25 + 25.1 + 3000) / 5)
    assert result.to_json()["accuracy"] == {
        "1": 40.0,
        "25": 60.0,
        "200": 80.0,
        "750": 80.0,
        "2500": 80.0,
    }


def test_evaluate_coordinates_and_the_table() -> None:
    result = evaluate_coordinates([0, 0], [0, 0], [0, 0], [0, 90])
    assert result.accuracy[1] == 50.0
    table = result.table()
    assert "street     1 km   50.0 %" in table
    assert "continent  2500 km   50.0 %" in table


def test_no_predictions_cannot_be_evaluated() -> None:
    with pytest.raises(ValueError, match="no predictions"):
        evaluate_distances([])


def test_reading_stops_at_the_blank_line_before_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        HEADER + "a.jpg,1,1,2,2,0\r\nb.jpg,10,11,20,21,5\r\n\r\nstreet acc (1km),x\r\n0.5,1\r\n"
    )
    predictions = read_predictions_csv(path)
    assert predictions.image_ids == ["a.jpg", "b.jpg"]
    assert predictions.gt_lat.tolist() == [1.0, 10.0]
    assert predictions.pred_lon.tolist() == [2.0, 21.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("img_id,gt_lat\n", "lacks"),
        (HEADER, "no rows"),
        (HEADER + "a.jpg,1,x,2,2,0\n", "line 2"),
        (HEADER + "a.jpg,1\n", "line 2"),
    ],
)
def test_malformed_predictions_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(DataFileError, match=message):
        read_predictions_csv(path)


def _result_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "geoestimation" / "results").glob("*/*.csv"))
    assert {f.parent.name for f in files} == {"im2gps", "im2gps3k"}
    return files


def test_every_published_results_file_matches_its_summary_row(shared_data: Path) -> None:
    files = _result_files(shared_data)
    assert len(files) == 12
    for path in files:
        with path.open(newline="") as handle:
            summary = [float(v) for v in list(csv.reader(handle))[-1]]
        result = read_predictions_csv(path).evaluate()
        assert result.n == (237 if path.parent.name == "im2gps" else 2997)
        ours = [result.accuracy[t] / 100 for t in THRESHOLDS_KM]
        # The summary holds fractions to 6 decimals and the mean error to 2.
        assert ours == pytest.approx(summary[:5], abs=1e-6), path
        assert result.mean_km == pytest.approx(summary[5], abs=0.005), path


def test_isns_on_im2gps3k_reproduces_the_paper(shared_data: Path) -> None:
    path = shared_data / "geoestimation" / "results" / "im2gps3k" / "ISNs_M-fstar-S3.csv"
    result = read_predictions_csv(path).evaluate()
    assert [round(result.accuracy[t], 1) for t in THRESHOLDS_KM] == [10.5, 28.0, 36.6, 49.7, 66.0]
