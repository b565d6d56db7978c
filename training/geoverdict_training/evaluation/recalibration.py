"""`geoverdict calibrate`: a model's temperatures refitted on photos it was not trained on, and
its archive rewritten with them (a new content hash, so a new model version).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.evaluation.calibration_report import (
    CalibrationReport,
    fit_report,
    held_out,
)
from geoverdict_training.evaluation.predictions import predict_manifest
from geoverdict_training.exceptions import ConfigError, DataFileError
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.serving.archive import model_config_of, rewrite_archive
from geoverdict_training.serving.bundle import ModelBundle, read_bundle


def calibrate_bundle(
    bundle: ModelBundle,
    manifest: Manifest,
    images: Path,
    *,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
) -> tuple[ModelBundle, CalibrationReport]:
    """The bundle with temperatures refitted on `manifest`'s photos under `images`."""
    if not bundle.partitions:
        raise ConfigError(f"{bundle.name} is a scene-only model: it answers no cells")
    predictor = bundle.predictor().with_calibration(Calibration())
    predictions = predict_manifest(
        predictor,
        bundle.transform(),
        manifest,
        images,
        min_side=bundle.resize,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        keep_logits=True,
    )
    if predictions.rows.size == 0:
        raise DataFileError(f"no photo under {images} could be predicted")
    report = fit_report(predictor, held_out(predictor, predictions, manifest))
    calibrated = dataclasses.replace(
        bundle, calibration=report.calibration, calibration_report=report.to_json()
    )
    return calibrated, report


def calibrate_archive(
    archive: Path, manifest: Manifest, images: Path, out: Path | None = None, **options: Any
) -> tuple[Path, str, CalibrationReport]:
    """Refit an archive's temperatures (calibrate_bundle's options) and write it to `out`
    (default: over itself); returns the archive, its new model version and the report."""
    bundle = read_bundle(archive)
    calibrated, report = calibrate_bundle(bundle, manifest, images, **options)
    written = rewrite_archive(calibrated, model_config_of(archive), out or archive)
    return written, calibrated.version, report
