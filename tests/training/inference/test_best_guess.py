"""The best guess: the point of least expected distance (or most mass within R), inside a cell,
chosen from the whole distribution rather than its argmax."""

from __future__ import annotations

import numpy as np
import pytest

from geoverdict_common.distances import haversine_km
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.inference.best_guess import (
    EXPECTED_DISTANCE,
    MASS_WITHIN,
    GuessRule,
    best_guess,
    inner_points,
)

# Cells along the equator, 30 degrees apart (3,336 km), and two far away.
POINTS = [(0.0, 0.0), (0.0, 30.0), (0.0, 60.0), (45.0, -100.0), (-30.0, 140.0)]


def _fine(level: int = 6) -> Partition:
    lat = np.array([p[0] for p in POINTS])
    lon = np.array([p[1] for p in POINTS])
    return Partition(
        name="cells_fine",
        cell_ids=s2.parent_ids(s2.leaf_cell_ids(lat, lon), level),
        counts=np.array([5, 4, 3, 2, 1], dtype=np.int64),
        lat_mean=lat,
        lon_mean=lon,
        num_images=15,
    )


def _expected_km(fine: Partition, p: np.ndarray, lat: float, lon: float) -> float:
    return float(haversine_km(lat, lon, fine.lat_mean, fine.lon_mean) @ p)


def test_the_guess_is_the_middle_of_the_mass_not_the_most_probable_cell() -> None:
    fine = _fine()
    p = np.array([0.40, 0.35, 0.25, 0.0, 0.0])  # the top cell holds 40 %; the median is at 30 E
    guess = best_guess(fine, p, GuessRule())
    assert guess.cell == 1  # the middle cell, not cell 0
    assert haversine_km(guess.lat, guess.lon, 0.0, 30.0) < 200.0
    # It is no worse in expectation than any cell's own point, the top cell's included.
    assert guess.expected_km == pytest.approx(_expected_km(fine, p, guess.lat, guess.lon))
    for k in range(len(POINTS)):
        assert guess.expected_km <= _expected_km(fine, p, *POINTS[k]) + 1e-6


def test_the_guess_lies_inside_the_cell_it_names() -> None:
    fine = _fine(level=3)  # wide cells: the refinement moves the point within them
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.dirichlet(np.ones(len(POINTS)))
        guess = best_guess(fine, p, GuessRule())
        leaf = s2.leaf_cell_ids(np.array([guess.lat]), np.array([guess.lon]))
        assert fine.classes_containing(leaf)[0] == guess.cell


def test_refining_inside_a_wide_cell_can_only_lower_the_expected_distance() -> None:
    fine = _fine(level=2)
    p = np.array([0.3, 0.0, 0.3, 0.4, 0.0])
    guess = best_guess(fine, p, GuessRule())
    best_point = min(_expected_km(fine, p, *point) for point in POINTS)
    assert guess.expected_km <= best_point + 1e-6


def test_mass_within_answers_the_point_with_the_most_probability_nearby() -> None:
    fine = _fine()
    # 45 % on the far cell, 55 % split over two neighbours 3,336 km apart.
    p = np.array([0.0, 0.275, 0.275, 0.45, 0.0])
    assert best_guess(fine, p, GuessRule(MASS_WITHIN, 1000.0)).cell == 3  # alone, 45 %
    assert best_guess(fine, p, GuessRule(MASS_WITHIN, 3500.0)).cell in (1, 2)  # the pair, 55 %
    assert best_guess(fine, p, GuessRule()).cell in (1, 2)  # nearer to all of it on average


def test_a_distribution_on_one_cell_answers_that_cell() -> None:
    fine = _fine()
    for k in range(len(POINTS)):
        p = np.zeros(len(POINTS))
        p[k] = 1.0
        assert best_guess(fine, p, GuessRule()).cell == k


def test_every_inner_point_lies_inside_its_cell() -> None:
    fine = _fine(level=4)
    lat, lon = inner_points(fine)
    assert lat.shape == lon.shape == (len(POINTS), 64)
    owners = fine.classes_containing(s2.leaf_cell_ids(lat.ravel(), lon.ravel()))
    assert (owners.reshape(lat.shape) == np.arange(len(POINTS))[:, None]).all()


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("expected_distance", GuessRule(EXPECTED_DISTANCE)),
        ("mass_within:2500", GuessRule(MASS_WITHIN, 2500.0)),
        (" mass_within:750.5", GuessRule(MASS_WITHIN, 750.5)),
    ],
)
def test_rules_parse_and_print_back(text: str, rule: GuessRule) -> None:
    assert GuessRule.parse(text) == rule
    assert GuessRule.parse(str(rule)) == rule


@pytest.mark.parametrize(
    "text",
    [
        "",
        "median",
        "mass_within",
        "mass_within:",
        "mass_within:-5",
        "mass_within:km",
        "mass_within:nan",
        "expected_distance:10",
    ],
)
def test_a_bad_rule_is_an_error_naming_the_rules(text: str) -> None:
    with pytest.raises(ConfigError, match="best guess rule"):
        GuessRule.parse(text)
