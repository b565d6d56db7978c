"""Calibration reports: an honest (cross-fitted) error beside the in-sample one."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoverdict_training.data.manifest import read_manifest
from geoverdict_training.evaluation.calibration_report import cross_fitted, fit_report, held_out
from geoverdict_training.evaluation.predictions import predict_manifest
from geoverdict_training.serving.bundle import read_bundle
from tests.training.conftest import TinyRun


def test_cross_fitting_measures_each_half_with_temperatures_from_the_other(
    tiny_run: TinyRun, tiny_archive: Path
) -> None:
    bundle = read_bundle(tiny_archive)
    photos = read_manifest(tiny_run.folder / "meta.csv")  # 8 photographers
    predictor = bundle.predictor()
    predictions = predict_manifest(
        predictor,
        bundle.transform(),
        photos,
        tiny_run.folder / "images",
        min_side=bundle.resize,
        workers=0,
        progress=False,
        keep_logits=True,
    )
    held = held_out(predictor, predictions, photos)
    assert held.first_half is not None
    assert 0 < held.first_half.sum() < len(photos)
    report = fit_report(predictor, held)
    assert report.cross_fitted is not None and report.cross_fitted.n == len(photos)
    assert report.after.nll <= report.before.nll + 1e-9
    assert cross_fitted(predictor, held.subset(held.first_half)) is None  # no halves left
    text = report.table()
    assert "cross-fitted" in text and "hierarchy" in text
    assert report.to_json()["after_cross_fitted"]["ece"] == pytest.approx(report.cross_fitted.ece)
