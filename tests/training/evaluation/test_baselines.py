"""The trivial baselines of the training photos: the densest point, the geodesic median and the
training prior, the answers every evaluation shows beside the model."""

from __future__ import annotations

import numpy as np
import pytest

from geoverdict_common.distances import haversine_km
from geoverdict_training.evaluation.baselines import baseline_evaluations, constant_points
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo.partitions import PartitionSpec, build_partitions
from geoverdict_training.inference.best_guess import GuessRule

ROME, MADRID, NEW_YORK, SYDNEY = (41.9, 12.5), (40.4, -3.7), (40.7, -74.0), (-33.9, 151.2)


def _photos(places: dict[tuple[float, float], int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    lat = np.concatenate([rng.normal(p[0], 0.5, n) for p, n in places.items()])
    lon = np.concatenate([rng.normal(p[1], 0.5, n) for p, n in places.items()])
    return lat, lon


def test_the_densest_point_has_most_photos_within_2500_km() -> None:
    # New York has the most photos of one place; Rome and Madrid together have more.
    lat, lon = _photos({ROME: 30, MADRID: 30, NEW_YORK: 45})
    points = constant_points(lat, lon)
    assert points["photos"] == 105
    densest = points["densest"]
    assert haversine_km(*densest, *ROME) <= 2500 and haversine_km(*densest, *MADRID) <= 2500
    within = haversine_km(*densest, lat, lon) <= 2500
    assert within.sum() >= 60


def test_the_geodesic_median_sits_with_the_majority() -> None:
    lat, lon = _photos({NEW_YORK: 60, SYDNEY: 40})
    median = constant_points(lat, lon)["geodesic_median"]
    assert haversine_km(*median, *NEW_YORK) < 300  # a median, not a mean in the Pacific


def test_no_photos_is_an_error() -> None:
    with pytest.raises(ConfigError, match="coordinates"):
        constant_points([], [])


def test_every_baseline_is_measured_on_the_photos() -> None:
    lat, lon = _photos({ROME: 40, MADRID: 30, NEW_YORK: 30})
    (fine,) = build_partitions(lat, lon, [PartitionSpec(5, 50)])
    points = constant_points(lat, lon)
    test_lat, test_lon = np.array([ROME[0], NEW_YORK[0]]), np.array([ROME[1], NEW_YORK[1]])
    results = baseline_evaluations(points, fine, GuessRule(), test_lat, test_lon)
    assert set(results) == {"densest", "geodesic_median", "prior, top cell", "prior, best guess"}
    assert results["densest"].accuracy[2500] == 50.0  # Rome's photo, not New York's
    assert all(result.n == 2 for result in results.values())
    # An archive older than the baselines has only the prior.
    assert set(baseline_evaluations({}, fine, GuessRule(), test_lat, test_lon)) == {
        "prior, top cell",
        "prior, best guess",
    }
