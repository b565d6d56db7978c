"""Expected calibration error on a hand-computed example, S2 containment of the top-1 cell, and
the reliability diagram."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from geoverdict_training.evaluation.reliability import (
    BINS,
    plot_reliability,
    reliability,
    top1_cell_hits,
)
from geoverdict_training.exceptions import TensorError
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import Partition


def test_ece_equals_the_hand_computed_value() -> None:
    confidence = [0.05, 0.15, 0.15, 0.95, 0.95, 0.95, 0.95]
    hits = [False, True, False, True, True, True, False]
    result = reliability(confidence, hits, [math.nan] * 7)
    # Bin 0: 1 photo, confidence 0.05, right 0 -> gap 0.05; bin 1: 2 photos, 0.15 vs 0.5 -> 0.35;
    # bin 9: 4 photos, 0.95 vs 0.75 -> 0.2. ECE = (1 * 0.05 + 2 * 0.35 + 4 * 0.2) / 7.
    assert result.ece == pytest.approx((0.05 + 0.7 + 0.8) / 7)
    assert result.top1_cell_accuracy == pytest.approx(4 / 7)
    assert result.mean_confidence == pytest.approx(np.mean(confidence))
    assert len(result.bins) == BINS
    as_json = result.to_json()
    assert as_json["bins"][1] == [0.1, 2, pytest.approx(0.15), 0.5]
    assert as_json["bins"][5] == [0.5, 0, None, None]
    assert {"ece", "top1_cell_accuracy", "mean_confidence", "nll", "bins"} <= set(as_json)


def test_a_calibrated_set_has_a_small_ece_and_an_overconfident_one_a_large_one() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.0, 1.0, 20_000)
    honest = rng.uniform(0.0, 1.0, confidence.size) < confidence
    assert reliability(confidence, honest, confidence).ece < 0.02
    wrong_most_of_the_time = rng.uniform(0.0, 1.0, confidence.size) < 0.06
    assert reliability(confidence, wrong_most_of_the_time, confidence).ece > 0.4


def test_certainty_falls_in_the_last_bin_and_nll_skips_photos_outside_every_cell() -> None:
    result = reliability([1.0, 0.5], [True, False], [1.0, math.nan])
    assert result.bins[-1].n == 1 and result.bins[5].n == 1
    assert result.nll == 0.0 and result.nll_photos == 1
    assert reliability([0.5], [False], [0.25]).nll == pytest.approx(math.log(4))


def test_nonsense_is_refused() -> None:
    with pytest.raises(TensorError, match="no photos"):
        reliability([], [], [])
    with pytest.raises(TensorError, match="same length"):
        reliability([0.5, 0.5], [True], [0.5, 0.5])
    with pytest.raises(TensorError, match=r"in \[0, 1\]"):
        reliability([1.5], [True], [0.5])


def test_the_top1_cell_contains_the_photo_by_s2_containment() -> None:
    paris, nyc = (48.85, 2.35), (40.71, -74.0)
    leaves = s2.leaf_cell_ids([paris[0], nyc[0]], [paris[1], nyc[1]])
    cells = np.array([s2.parent_ids(leaves[:1], 12)[0], s2.parent_ids(leaves[1:], 4)[0]])
    lat_mean, lon_mean = np.array([paris[0], nyc[0]]), np.array([paris[1], nyc[1]])
    fine = Partition("fine", cells, np.ones(2, dtype=np.int64), lat_mean, lon_mean, 2)
    # Photos: in Paris's cell, 50 km from Paris (outside its ~2 km cell), in the big NYC cell.
    lat, lon = [48.8501, 49.3, 40.0], [2.3501, 2.35, -74.5]
    assert top1_cell_hits(fine, np.array([0, 0, 1]), lat, lon).tolist() == [True, False, True]
    assert top1_cell_hits(fine, np.array([1, 1, 0]), lat, lon).tolist() == [False, False, False]
    with pytest.raises(TensorError, match="answers for"):
        top1_cell_hits(fine, np.array([0]), lat, lon)


def test_the_reliability_diagram_is_a_png(tmp_path: Path) -> None:
    before = reliability([0.9, 0.8, 0.95], [False, True, False], [0.1, 0.8, math.nan])
    after = reliability([0.3, 0.2, 0.4], [False, True, False], [0.1, 0.2, math.nan])
    path = tmp_path / "plots" / "reliability.png"
    plot_reliability({"before": before, "after": after}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
