"""Geolocation accuracy as the literature reports it: great-circle error and accuracy at 1 / 25 /
200 / 750 / 2500 km (street, city, region, country, continent), median and mean error.

Also reads the per-image predictions files GeoEstimation published
(`img_id,gt_lat,predicted_lat,gt_long,predicted_long,great_circle_distance`, then a blank line
and a summary block), so its tables can be reproduced from its own files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from geoverdict_common.distances import haversine_km
from geoverdict_training.exceptions import DataFileError

THRESHOLDS_KM = (1, 25, 200, 750, 2500)
THRESHOLD_NAMES = ("street", "city", "region", "country", "continent")
PREDICTION_COLUMNS = ("img_id", "gt_lat", "predicted_lat", "gt_long", "predicted_long")


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (percent of photos within each threshold) and error statistics in km."""

    n: int
    accuracy: dict[int, float]  # threshold km -> percent
    median_km: float
    mean_km: float

    def to_json(self) -> dict[str, object]:
        """`{"n", "accuracy": {"1": %, ...}, "median_km", "mean_km"}`."""
        return {
            "n": self.n,
            "accuracy": {str(t): self.accuracy[t] for t in THRESHOLDS_KM},
            "median_km": self.median_km,
            "mean_km": self.mean_km,
        }

    def table(self) -> str:
        """A plain-text table for people: one line per threshold, then the error statistics."""
        lines = [f"photos: {self.n}"]
        for threshold, name in zip(THRESHOLDS_KM, THRESHOLD_NAMES, strict=True):
            lines.append(f"{name:>9} {threshold:>5} km  {self.accuracy[threshold]:5.1f} %")
        lines.append(f"median error  {self.median_km:.1f} km")
        lines.append(f"mean error    {self.mean_km:.1f} km")
        return "\n".join(lines)


def evaluate_distances(errors_km: npt.ArrayLike) -> Evaluation:
    """Accuracy at each threshold (distance <= threshold, as the reference counts) and errors."""
    errors = np.asarray(errors_km, dtype=np.float64).ravel()
    if errors.size == 0:
        raise ValueError("no predictions to evaluate")
    return Evaluation(
        n=int(errors.size),
        accuracy={t: float(np.mean(errors <= t) * 100.0) for t in THRESHOLDS_KM},
        median_km=float(np.median(errors)),
        mean_km=float(np.mean(errors)),
    )


def evaluate_coordinates(
    gt_lat: npt.ArrayLike, gt_lon: npt.ArrayLike, pred_lat: npt.ArrayLike, pred_lon: npt.ArrayLike
) -> Evaluation:
    """Evaluate predicted coordinates against the ground truth (degrees)."""
    return evaluate_distances(haversine_km(gt_lat, gt_lon, pred_lat, pred_lon))


@dataclass(frozen=True, eq=False)
class Predictions:
    """Per-image predictions: ground truth and predicted coordinates in degrees."""

    image_ids: list[str]  # (N,)
    gt_lat: npt.NDArray[np.float64]  # (N,)
    gt_lon: npt.NDArray[np.float64]  # (N,)
    pred_lat: npt.NDArray[np.float64]  # (N,)
    pred_lon: npt.NDArray[np.float64]  # (N,)

    def evaluate(self) -> Evaluation:
        """Evaluate these predictions."""
        return evaluate_coordinates(self.gt_lat, self.gt_lon, self.pred_lat, self.pred_lon)


def read_predictions_csv(path: Path) -> Predictions:
    """Read a predictions CSV up to its first blank line (the published files' summary follows)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _parse_predictions(path, csv.reader(handle))
    except OSError as exc:
        raise DataFileError(f"cannot read predictions {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"predictions {path} is not CSV text: {exc}") from exc


def _parse_predictions(path: Path, reader: Iterator[list[str]]) -> Predictions:
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [c for c in PREDICTION_COLUMNS if c not in header]
    if missing:
        raise DataFileError(f"predictions {path} lacks column(s) {', '.join(missing)}")
    index = [header.index(c) for c in PREDICTION_COLUMNS]
    ids: list[str] = []
    values: list[tuple[float, float, float, float]] = []
    for line, row in enumerate(reader, start=2):
        if not any(field.strip() for field in row):
            break  # the summary block starts after the first blank line
        try:
            fields = [row[k] for k in index]
            gt_lat, pred_lat, gt_lon, pred_lon = (float(f) for f in fields[1:])
        except (IndexError, ValueError) as exc:
            raise DataFileError(f"predictions {path}, line {line}: {exc}") from exc
        ids.append(fields[0])
        values.append((gt_lat, gt_lon, pred_lat, pred_lon))
    if not values:
        raise DataFileError(f"predictions {path} has no rows")
    array = np.array(values, dtype=np.float64)  # (N, 4)
    return Predictions(ids, array[:, 0], array[:, 1], array[:, 2], array[:, 3])
