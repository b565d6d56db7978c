"""The one haversine: known distances on the 6,371 km sphere, symmetric, across the date line,
for numbers and for arrays alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoverdict_common.distances import EARTH_RADIUS_KM, haversine_km

PARIS = (48.8566, 2.3522)
NEW_YORK = (40.7128, -74.0060)


def test_haversine_known_distances() -> None:
    one_degree = 2 * math.pi * EARTH_RADIUS_KM / 360
    assert haversine_km(0, 0, 0, 1) == pytest.approx(one_degree)
    assert haversine_km(0, 179.5, 0, -179.5) == pytest.approx(one_degree)  # across the antimeridian
    assert haversine_km(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    # Paris to London, about 344 km on this sphere.
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.6, abs=0.5)
    assert haversine_km(10, 20, -30, 40) == pytest.approx(haversine_km(-30, 40, 10, 20))
    assert haversine_km(5, 5, 5, 5) == 0.0
    distances = haversine_km(np.zeros(3), np.zeros(3), np.array([0, 1, 2]), np.zeros(3))
    assert distances == pytest.approx([0, one_degree, 2 * one_degree])


def test_haversine_matches_known_distances() -> None:
    assert haversine_km(*PARIS, *PARIS) == 0.0
    assert haversine_km(*PARIS, *NEW_YORK) == pytest.approx(5837, abs=5)
    assert haversine_km(*NEW_YORK, *PARIS) == haversine_km(*PARIS, *NEW_YORK)
    assert haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_KM)  # antipodes
    assert haversine_km(0, 179.5, 0, -179.5) == pytest.approx(111.19, abs=0.01)  # date line
