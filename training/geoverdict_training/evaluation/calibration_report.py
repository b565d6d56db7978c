"""Fitting a model's temperatures on held-out photos, and measuring what that bought.

`geoverdict train` (at its end, on its validation photographers) and `geoverdict calibrate`
(recalibration.py) both fit through `fit_report`: the temperatures (inference/calibration.py),
and the reliability (reliability.py) before and after. Measuring on the photos the temperatures
were fitted on flatters them, if only a little (one number per head learned from 300 photos), so
the report also cross-fits: the photographers are split into two halves, temperatures fitted on
one half are measured on the other and the other way round, and the pooled held-out answers
give the honest ECE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from geoverdict_training.data.labels import build_labels
from geoverdict_training.data.manifest import Manifest
from geoverdict_training.data.splits import split_by_author
from geoverdict_training.evaluation.predictions import Predictions
from geoverdict_training.evaluation.reliability import Reliability, reliability, top1_cell_hits
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.inference.calibration import Calibration, fit_calibration, nll
from geoverdict_training.inference.predictor import Predictor

CROSS_FIT_SEED = 0


@dataclass(frozen=True, eq=False)
class HeldOut:
    """A model's raw outputs on photos it was not trained on: what fitting and measuring need."""

    logits: dict[str, torch.Tensor]  # head -> (N, n) before calibration
    labels: dict[str, torch.Tensor]  # head -> (N,) class, -1 where the photo has none
    lat: npt.NDArray[np.float64]  # (N,) true position, degrees
    lon: npt.NDArray[np.float64]
    first_half: npt.NDArray[np.bool_] | None  # (N,) one half of the photographers; None: no split

    def subset(self, keep: npt.NDArray[np.bool_]) -> HeldOut:
        """The photos where `keep` (N,) is true."""
        rows = torch.from_numpy(np.flatnonzero(keep))
        return HeldOut(
            logits={head: z[rows] for head, z in self.logits.items()},
            labels={head: y[rows] for head, y in self.labels.items()},
            lat=self.lat[keep],
            lon=self.lon[keep],
            first_half=None,
        )


def held_out(predictor: Predictor, predictions: Predictions, manifest: Manifest) -> HeldOut:
    """The held-out set of `predictions` (made with keep_logits) of `manifest`'s photos."""
    if predictions.logits is None:
        raise ConfigError("fitting temperatures needs the logits: predict with keep_logits")
    rows = predictions.rows  # (N,) manifest rows that were predicted
    columns = build_labels(manifest, predictor.partitions).columns()
    labels = {head: torch.from_numpy(columns[head][rows]) for head in predictions.logits}
    first_half = None
    photographers = set(manifest.authors or [])
    if manifest.authors is not None and len(photographers) >= 2:
        half = split_by_author(manifest, 0.5, CROSS_FIT_SEED).val
        in_half = set(half.image_ids)
        first_half = np.array([manifest.image_ids[r] in in_half for r in rows], dtype=bool)
        if first_half.all() or not first_half.any():
            first_half = None
    return HeldOut(
        logits={head: torch.from_numpy(z) for head, z in predictions.logits.items()},
        labels=labels,
        lat=predictions.gt[:, 0],
        lon=predictions.gt[:, 1],
        first_half=first_half,
    )


@dataclass(frozen=True)
class _Answers:
    """Per-photo top-1 answers of a calibrated predictor, for reliability()."""

    confidence: npt.NDArray[np.float64]  # (N,)
    hits: npt.NDArray[np.bool_]  # (N,)
    p_true: npt.NDArray[np.float64]  # (N,) NaN where no fine cell holds the photo


def _answers(predictor: Predictor, held: HeldOut) -> _Answers:
    fine = predictor.fine
    if fine is None:
        raise ConfigError("a scene-only model answers no cells to calibrate")
    cells = predictor.from_logits(held.logits).cells  # (N, n_fine)
    if cells is None:
        raise ConfigError("the model predicts no cells")
    cells = cells.double()
    top1, best = cells.max(dim=-1)
    truth = held.labels[fine.name]
    p_true = cells.gather(1, truth.clamp(min=0)[:, None])[:, 0]
    return _Answers(
        confidence=top1.numpy(),
        hits=top1_cell_hits(fine, best.numpy(), held.lat, held.lon),
        p_true=torch.where(truth >= 0, p_true, torch.nan).numpy(),
    )


def measure(predictor: Predictor, held: HeldOut) -> Reliability:
    """Reliability of the predictor's answers (with its own calibration) on the held-out set."""
    answers = _answers(predictor, held)
    return reliability(answers.confidence, answers.hits, answers.p_true)


def _fit(predictor: Predictor, held: HeldOut) -> Calibration:
    names = [p.name for p in predictor.partitions]
    ancestors = predictor.ancestors
    return fit_calibration(held.logits, held.labels, names, ancestors)


def cross_fitted(predictor: Predictor, held: HeldOut) -> Reliability | None:
    """Reliability of temperatures fitted on one half of the photographers, measured on the
    other half, both ways round, pooled; None without two halves."""
    if held.first_half is None:
        return None
    pooled: list[_Answers] = []
    for fit_on in (held.first_half, ~held.first_half):
        calibration = _fit(predictor, held.subset(fit_on))
        pooled.append(_answers(predictor.with_calibration(calibration), held.subset(~fit_on)))
    return reliability(
        np.concatenate([a.confidence for a in pooled]),
        np.concatenate([a.hits for a in pooled]),
        np.concatenate([a.p_true for a in pooled]),
    )


def _summary(result: Reliability | None) -> dict[str, Any] | None:
    if result is None:
        return None
    keys = ("ece", "top1_cell_accuracy", "mean_confidence", "nll")
    return {key: value for key, value in result.to_json().items() if key in keys}


@dataclass(frozen=True)
class CalibrationReport:
    """Fitted temperatures and the reliability they give on held-out photos."""

    calibration: Calibration
    before: Reliability  # uncalibrated
    after: Reliability  # calibrated, measured on the photos it was fitted on
    cross_fitted: Reliability | None  # fitted on one half of the photographers, measured on other
    head_nll: dict[str, tuple[float, float]]  # head -> NLL before, after its temperature

    def to_json(self) -> dict[str, Any]:
        """A compact record (no bins) for metrics.jsonl, metadata.json and the command's output."""
        return {
            "photos": self.before.n,
            "temperatures": dict(self.calibration.temperatures),
            "hierarchy_temperature": self.calibration.hierarchy,
            "head_nll": {head: list(values) for head, values in self.head_nll.items()},
            "before": _summary(self.before),
            "after_in_sample": _summary(self.after),
            "after_cross_fitted": _summary(self.cross_fitted),
        }

    def table(self) -> str:
        """Plain text for people."""
        lines = [f"temperatures fitted on {self.before.n} photos:"]
        for head, (before, after) in self.head_nll.items():
            t = self.calibration.temperature(head)
            lines.append(f"  {head:<16} T {t:6.3f}   NLL {before:.3f} -> {after:.3f}")
        lines.append(f"  hierarchy        T {self.calibration.hierarchy:6.3f}")
        rows = [("before", self.before), ("after, in-sample", self.after)]
        if self.cross_fitted is not None:
            rows.append(("after, cross-fitted", self.cross_fitted))
        for label, result in rows:
            lines.append(
                f"{label:<20} ECE {result.ece:.3f}  NLL {result.nll:.3f}  "
                f"top-1 cell right {result.top1_cell_accuracy:.1%}  "
                f"mean confidence {result.mean_confidence:.1%}"
            )
        return "\n".join(lines)


def fit_report(predictor: Predictor, held: HeldOut) -> CalibrationReport:
    """Fit temperatures on all the held-out photos and measure them in-sample and cross-fitted;
    the predictor's own calibration is ignored (the fit starts from the raw logits)."""
    calibration = _fit(predictor, held)
    head_nll = {
        head: (nll(z, held.labels[head]), nll(z, held.labels[head], calibration.temperature(head)))
        for head, z in held.logits.items()
    }
    return CalibrationReport(
        calibration=calibration,
        before=measure(predictor.with_calibration(Calibration()), held),
        after=measure(predictor.with_calibration(calibration), held),
        cross_fitted=cross_fitted(predictor, held),
        head_nll=head_nll,
    )
