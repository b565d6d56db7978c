"""The trivial answers a model must beat, computed from its training photos alone.

A geolocation model trained on few photos can score worse than a constant: with a flat
distribution its top cell is noise, while one well-chosen point is within 2,500 km of many
photos. Every evaluation therefore reports, beside the model:

- `densest`: the point with the most training photos within 2,500 km (the best constant for
  accuracy at the continent threshold, on the training photos);
- `geodesic_median`: the point of least total great-circle distance to the training photos (the
  best constant for the mean error, on the training photos);
- `prior`: the training photos' share per fine cell used as the prediction for every photo,
  answered by its top cell and by the model's best-guess rule.

The constant points are searched on a 2.5 degree grid (10,368 points), the training photos
binned on the same grid first, so that MP-16's millions of photos cost no more than a few
thousand: a point is off by at most 1.25 degrees (about 140 km) from the exact optimum. They are
computed when training starts, saved in the checkpoint and carried into the archive's metadata
(key `baselines`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from geoverdict_common.distances import haversine_km
from geoverdict_training.evaluation.accuracy import Evaluation, evaluate_coordinates
from geoverdict_training.exceptions import CheckpointError, ConfigError
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.inference.best_guess import GuessRule, best_guess

GRID_DEG = 2.5
DENSEST_KM = 2500.0
CONSTANTS = ("densest", "geodesic_median")


def _grid() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Centres of the 2.5 degree grid's squares, (72 * 144,) latitudes and longitudes."""
    lat = np.arange(-90 + GRID_DEG / 2, 90, GRID_DEG)
    lon = np.arange(-180 + GRID_DEG / 2, 180, GRID_DEG)
    grid_lat, grid_lon = np.meshgrid(lat, lon, indexing="ij")
    return grid_lat.ravel(), grid_lon.ravel()


def constant_points(lat: npt.ArrayLike, lon: npt.ArrayLike) -> dict[str, Any]:
    """The constant baselines of photos at (lat, lon) degrees: `{"photos", "grid_deg",
    "densest": [lat, lon], "geodesic_median": [lat, lon]}`, as the archive keeps them."""
    lat_arr = np.asarray(lat, dtype=np.float64).ravel()
    lon_arr = np.asarray(lon, dtype=np.float64).ravel()
    if lat_arr.size == 0 or lat_arr.shape != lon_arr.shape:
        raise ConfigError("baselines need the training photos' coordinates, one pair each")
    grid_lat, grid_lon = _grid()
    rows = np.clip(((lat_arr + 90) // GRID_DEG).astype(np.int64), 0, int(180 / GRID_DEG) - 1)
    cols = np.clip(((lon_arr + 180) // GRID_DEG).astype(np.int64), 0, int(360 / GRID_DEG) - 1)
    counts = np.bincount(rows * int(360 / GRID_DEG) + cols, minlength=grid_lat.size)
    occupied = np.flatnonzero(counts)  # (B,) squares holding photos
    distances = haversine_km(  # (G, B): every candidate point to every occupied square
        grid_lat[:, None], grid_lon[:, None], grid_lat[occupied][None], grid_lon[occupied][None]
    )
    weights = counts[occupied].astype(np.float64)
    densest = int(np.argmax((distances <= DENSEST_KM) @ weights))
    median = int(np.argmin(distances @ weights))
    return {
        "photos": int(lat_arr.size),
        "grid_deg": GRID_DEG,
        "densest": [float(grid_lat[densest]), float(grid_lon[densest])],
        "geodesic_median": [float(grid_lat[median]), float(grid_lon[median])],
    }


def _point(baselines: Mapping[str, Any], name: str) -> tuple[float, float]:
    try:
        lat, lon = (float(v) for v in baselines[name])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"baselines: {name} must be a [lat, lon] pair: {exc}") from exc
    return lat, lon


def baseline_evaluations(
    baselines: Mapping[str, Any],
    fine: Partition,
    rule: GuessRule,
    gt_lat: npt.ArrayLike,
    gt_lon: npt.ArrayLike,
) -> dict[str, Evaluation]:
    """Each baseline's accuracy on photos at (gt_lat, gt_lon): the constants of `baselines`
    (constant_points; absent in archives older than them), then the training prior (the fine
    cells' training photo counts) by its top cell and by the best-guess `rule`."""
    lat = np.asarray(gt_lat, dtype=np.float64)
    lon = np.asarray(gt_lon, dtype=np.float64)
    ones = np.ones_like(lat)
    results: dict[str, Evaluation] = {}
    for name in CONSTANTS:
        if name in baselines:
            point_lat, point_lon = _point(baselines, name)
            results[name] = evaluate_coordinates(lat, lon, point_lat * ones, point_lon * ones)
    prior = fine.counts.astype(np.float64) / fine.counts.sum()
    top = int(np.argmax(prior))
    results["prior, top cell"] = evaluate_coordinates(
        lat, lon, fine.lat_mean[top] * ones, fine.lon_mean[top] * ones
    )
    guess = best_guess(fine, prior, rule)
    results["prior, best guess"] = evaluate_coordinates(
        lat, lon, guess.lat * ones, guess.lon * ones
    )
    return results
