"""Refitting an archive's temperatures: a new model version, the same photos give the same fit,
and an archive replaced in place leaves nothing beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

from geoverdict_training.data.manifest import read_manifest
from geoverdict_training.evaluation.recalibration import calibrate_archive
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
