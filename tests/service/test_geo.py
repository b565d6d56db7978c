"""Distances, probability mass near a point, the precision floor, S2 parents and place names."""

from __future__ import annotations

import math
import random

import pytest

from geoverdict_common.distances import EARTH_RADIUS_KM, haversine_km
from geoverdict_service.geo import (
    PlaceNames,
    cell_radius_km,
    coarsen,
    masses_within,
    parent_token,
    s2_level_for,
)
from tests.service.s2_reference import MIN_EDGE_DERIV, MIN_EDGE_KM, PARENT_TOKENS
from tests.service.samples import PARIS, SYDNEY, TOKYO, cell


def random_points(rng: random.Random, count: int) -> list[tuple[float, float]]:
    """Points uniform on the sphere (latitude by its sine)."""
    return [
        (math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)) for _ in range(count)
    ]


def test_mass_within_sums_the_cells_near_a_point() -> None:
    cells = [
        cell(*PARIS, 0.5) | {"radius_km": 0.0},
        cell(48.9, 2.5, 0.2) | {"radius_km": 0.0},
        cell(*TOKYO, 0.3) | {"radius_km": 0.0},
    ]
    assert masses_within(cells, *PARIS, [1.0, 25.0, 20_100.0]) == pytest.approx([0.5, 0.7, 1.0])
    assert masses_within(cells, *SYDNEY, [100.0]) == [0.0]
    assert masses_within([], *PARIS, [25.0, 200.0]) == [0.0, 0.0]


def test_a_wide_cell_counts_by_the_share_of_it_inside_the_circle() -> None:
    wide = [cell(*PARIS, 1.0) | {"radius_km": 1000.0}]
    # (500 + 1000) / 2000 of it lies within 500 km of its point.
    assert masses_within(wide, *PARIS, [1000.0, 500.0]) == pytest.approx([1.0, 0.75])
    # 1,500 km from its point, a 750 km circle reaches 250 km into the cell: an eighth of it.
    east = (PARIS[0], PARIS[1] + 1500 / (111.195 * 0.6579))
    assert masses_within(wide, *east, [750.0]) == pytest.approx([0.125], abs=0.01)
    # About 3,000 km away, a 750 km circle ends well before the cell's near edge.
    far = (PARIS[0], PARIS[1] + 3000 / (111.195 * 0.6579))
    assert masses_within(wide, *far, [750.0]) == [0.0]


def test_a_cell_without_a_radius_counts_as_wide_as_its_level_allows() -> None:
    # Replies of archives from before radius_km: a level-2 cell spans thousands of km.
    assert cell_radius_km({"level": 2}) == pytest.approx(3884, abs=1)
    assert cell_radius_km({"level": 13}) == pytest.approx(1.9, abs=0.01)
    assert cell_radius_km({"level": 2, "radius_km": 812.5}) == 812.5


@pytest.mark.parametrize("precision_km", [0.5, 1.0, 25.0, 200.0, 1000.0])
def test_coarsen_snaps_within_the_precision_and_hides_the_point(precision_km: float) -> None:
    rng = random.Random(7)
    for lat, lon in [*random_points(rng, 2000), (90.0, 0.0), (-90.0, 180.0), (0.0, -180.0)]:
        snapped = coarsen(lat, lon, precision_km)
        assert -90 <= snapped[0] <= 90
        assert -180 <= snapped[1] <= 180
        assert haversine_km(lat, lon, *snapped) <= precision_km
        # A grid centre: coarsening it again changes nothing.
        assert coarsen(*snapped, precision_km) == snapped
    # Points much closer than the precision mostly share their reported point.
    near_paris = {coarsen(PARIS[0] + k * 1e-4, PARIS[1], 25.0) for k in range(100)}
    assert len(near_paris) <= 2


def test_coarsen_with_no_floor_changes_nothing() -> None:
    assert coarsen(48.856613, 2.352222, 0.0) == (48.856613, 2.352222)


def test_s2_level_for_gives_cells_no_finer_than_the_precision() -> None:
    assert s2_level_for(0.0) == 30
    assert s2_level_for(20_000.0) == 0
    for precision_km in [0.05, 0.3, 1.0, 1.2, 5.0, 25.0, 100.0, 750.0, 2500.0]:
        level = s2_level_for(precision_km)
        assert MIN_EDGE_KM[level] >= precision_km, (precision_km, level)
        # ... and not needlessly coarse: one level finer would break the floor somewhere.
        assert MIN_EDGE_DERIV * 2 ** -(level + 1) * EARTH_RADIUS_KM < precision_km


def test_parent_token_agrees_with_s2sphere() -> None:
    for token, ancestor, expected in PARENT_TOKENS:
        assert parent_token(token, ancestor) == expected, (token, ancestor)


@pytest.fixture(scope="module")
def places() -> PlaceNames:
    names = PlaceNames()
    names.warm_up()
    return names


def test_place_names_are_found_offline(places: PlaceNames) -> None:
    assert places.lookup(*PARIS) == {
        "name": "Paris",
        "admin1": "Ile-de-France",
        "country_code": "FR",
    }
    sydney = places.lookup(*SYDNEY)
    assert sydney is not None
    assert sydney["country_code"] == "AU"
    # Mid-ocean still answers with the nearest known place rather than failing.
    assert places.lookup(0.0, -140.0) is not None
