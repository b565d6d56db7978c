"""A model evaluated on labelled photos, as `geoverdict evaluate --model` reports it.

Accuracy at the literature's thresholds (accuracy.py) of the best guess the replies answer
(inference/best_guess.py, the archive's rule) and of the top cell, beside the trivial baselines
computed from the model's training photos (baselines.py): a model that does not beat them knows
nothing useful about where photos were taken. Then the calibration of the top-1 answer
(reliability.py: ECE, bins, NLL) with the model's own temperatures, and on request the reply
the TorchServe handler would give for each photo, beside the photo's true position: the
service's location_mismatch flag is measured on those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.evaluation.accuracy import (
    THRESHOLDS_KM,
    Evaluation,
    evaluate_coordinates,
)
from geoverdict_training.evaluation.baselines import baseline_evaluations
from geoverdict_training.evaluation.calibration_report import held_out, measure
from geoverdict_training.evaluation.predictions import Predictions, predict_manifest
from geoverdict_training.evaluation.reliability import Reliability, reliability, top1_cell_hits
from geoverdict_training.exceptions import ConfigError, DataFileError
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.serving.bundle import ModelBundle
from geoverdict_training.serving.replies import ReplySettings, image_facts, prediction_reply
from geoverdict_training.vocabulary import scene_names


@dataclass(frozen=True, eq=False)
class ModelEvaluation:
    """What evaluating a model on photos gave."""

    accuracy: Evaluation  # of the best guess, as the replies answer it
    rule: str  # the best guess's rule
    top_cell: Evaluation  # of the most probable cell's point
    baselines: dict[str, Evaluation]  # the trivial answers, from the training photos alone
    calibration: Reliability  # with the model's temperatures (none: all T = 1)
    uncalibrated: Reliability | None  # a calibrated model's answers with all T = 1, when asked
    predictions: Predictions

    def to_json(self) -> dict[str, Any]:
        """evaluate --predictions' keys for the best guess, its "rule", "top_cell" and
        "baselines" (name -> the same keys), and "calibration" (Reliability.to_json)."""
        return {
            **self.accuracy.to_json(),
            "rule": self.rule,
            "top_cell": self.top_cell.to_json(),
            "baselines": {name: e.to_json() for name, e in self.baselines.items()},
            "calibration": self.calibration.to_json(),
        }

    def comparison(self) -> str:
        """The model's answers and the baselines, a line each: % within each threshold, median."""
        header = "".join(f"{t:>7} km" for t in THRESHOLDS_KM)
        lines = [f"photos: {self.accuracy.n}", f"{'':<30}{header}   median km"]
        rows = {f"best guess ({self.rule})": self.accuracy, "top cell": self.top_cell}
        rows.update({f"baseline: {name}": e for name, e in self.baselines.items()})
        for name, result in rows.items():
            shares = "".join(f"{result.accuracy[t]:8.1f} %" for t in THRESHOLDS_KM)
            lines.append(f"{name:<30}{shares}   {result.median_km:9,.0f}")
        return "\n".join(lines)

    def table(self) -> str:
        """Plain text for people."""
        return f"{self.comparison()}\n{self.calibration.table()}"


def evaluate_bundle(
    bundle: ModelBundle,
    manifest: Manifest,
    images: Path,
    *,
    five_crop: bool = False,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    uncalibrated: bool = False,
    keep_cells: bool = False,
) -> ModelEvaluation:
    """Evaluate a geo model on the manifest's photos under `images`. With `uncalibrated` (and
    a calibrated model, one crop), also the reliability without its temperatures; with
    `keep_cells`, every photo's distribution is kept (for write_replies)."""
    if not bundle.partitions:
        raise ConfigError(f"{bundle.name} is a scene-only model: it predicts no location")
    predictor = bundle.predictor()
    compare = uncalibrated and bundle.calibration is not None and not five_crop
    predictions = predict_manifest(
        predictor,
        bundle.transform(five_crop=five_crop),
        manifest,
        images,
        min_side=bundle.resize,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        keep_logits=compare,
        keep_cells=keep_cells,
        rule=bundle.guess_rule,
    )
    if predictions.points is None or predictions.rows.size == 0:
        raise DataFileError(f"no photo of the manifest could be predicted from {images}")
    best, guesses = predictions.best, predictions.guesses
    if best is None or guesses is None or predictions.top1 is None or predictions.p_true is None:
        raise ConfigError("the model predicts no cells")
    gt, points = predictions.gt, predictions.points
    fine = bundle.partitions[-1]
    hits = top1_cell_hits(fine, best, gt[:, 0], gt[:, 1])
    before = None
    if compare:
        held = held_out(predictor, predictions, manifest)
        before = measure(predictor.with_calibration(Calibration()), held)
    return ModelEvaluation(
        accuracy=evaluate_coordinates(gt[:, 0], gt[:, 1], guesses[:, 0], guesses[:, 1]),
        rule=str(bundle.guess_rule),
        top_cell=evaluate_coordinates(gt[:, 0], gt[:, 1], points[:, 0], points[:, 1]),
        baselines=baseline_evaluations(
            bundle.baselines, fine, bundle.guess_rule, gt[:, 0], gt[:, 1]
        ),
        calibration=reliability(predictions.top1, hits, predictions.p_true),
        uncalibrated=before,
        predictions=predictions,
    )


def write_replies(
    bundle: ModelBundle, result: ModelEvaluation, manifest: Manifest, images: Path, path: Path
) -> int:
    """Write one JSON line per predicted photo: `{"id", "lat", "lon", "reply"}`, the reply as
    the handler builds it (prediction.schema.json; timings 0: not measured here). Returns the
    number of lines."""
    predictions = result.predictions
    if predictions.cells is None:
        raise ConfigError("writing replies needs the cells: evaluate with keep_cells")
    fine, names = bundle.partitions[-1], scene_names()
    settings = ReplySettings(best_guess=bundle.guess_rule)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("w", encoding="utf-8") as out:
            for k, row in enumerate(predictions.rows):
                image_id = manifest.image_ids[int(row)]
                facts = image_facts((images / image_id).read_bytes(), 0.0)
                scenes = {name: p[k] for name, p in predictions.scenes.items()}
                reply = prediction_reply(
                    bundle.version, fine, predictions.cells[k], scenes, names, facts, 0.0, settings
                )
                lat, lon = (float(v) for v in predictions.gt[k])
                out.write(json.dumps({"id": image_id, "lat": lat, "lon": lon, "reply": reply}))
                out.write("\n")
    except OSError as exc:
        raise DataFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return int(predictions.rows.size)
