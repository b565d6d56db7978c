"""Refitting an archive's temperatures: a new model version, the same photos give the same fit,
and an honest (cross-fitted) error beside the in-sample one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geoverdict_training.data.manifest import read_manifest
from geoverdict_training.evaluation.calibration_report import (
    calibrate_archive,
    cross_fitted,
    fit_report,
    held_out,
)
from geoverdict_training.inference.predictor import predict_manifest
from geoverdict_training.serving.bundle import read_bundle
from tests.training.conftest import TinyRun


def test_calibrating_an_archive_changes_its_model_version(
    tiny_run: TinyRun, tiny_archive: Path, tmp_path: Path
) -> None:
    images = tiny_run.folder / "images"
    photos = read_manifest(tiny_run.folder / "meta.csv")  # not the photos the run fitted on
    before = read_bundle(tiny_archive)
    out, version, report = calibrate_archive(
        tiny_archive, photos, images, tmp_path / "new.mar", workers=0, progress=False
    )
    after = read_bundle(out)
    assert after.version == version != before.version
    assert after.calibration == report.calibration != before.calibration
    assert after.calibration_report["photos"] == len(photos)
    assert [p.tokens for p in after.partitions] == [p.tokens for p in before.partitions]
    # The same photos give the same temperatures, so the same version: fitting is deterministic.
    _, again, _ = calibrate_archive(
        out, photos, images, tmp_path / "again.mar", workers=0, progress=False
    )
    assert again == version


def test_calibrating_in_place_replaces_the_archive_and_leaves_nothing_beside_it(
    tiny_run: TinyRun, tiny_archive: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "store" / "tiny.mar"
    archive.parent.mkdir()
    shutil.copy(tiny_archive, archive)
    photos = read_manifest(tiny_run.folder / "meta.csv")
    written, version, _ = calibrate_archive(
        archive, photos, tiny_run.folder / "images", workers=0, progress=False
    )
    assert written == archive
    assert read_bundle(archive).version == version != read_bundle(tiny_archive).version
    left = sorted(p.name for p in archive.parent.iterdir())
    assert "tiny.mar" in left
    assert not [name for name in left if name.startswith(".") or name.endswith(".partial")]


def test_cross_fitting_measures_each_half_with_temperatures_from_the_other(
    tiny_run: TinyRun, tiny_archive: Path
) -> None:
    bundle = read_bundle(tiny_archive)
    photos = read_manifest(tiny_run.folder / "meta.csv")  # 8 photographers
    predictor = bundle.predictor()
    predictions = predict_manifest(
        predictor, bundle.transform(), photos, tiny_run.folder / "images",
        min_side=bundle.resize, workers=0, progress=False, keep_logits=True,
    )  # fmt: skip
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
