"""Adaptive partitioning: equal to the reference algorithm, and the invariants the issue names."""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import s2sphere

from geoverdict_common.distances import haversine_km
from geoverdict_training.data.labels import assign_classes
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import (
    DEFAULT_SPECS,
    Partition,
    PartitionSpec,
    build_partitions,
)


def _reference(
    lat: np.ndarray, lon: np.ndarray, tau_min: int, tau_max: int
) -> list[tuple[str, int, float, float]]:
    """GeoEstimation's create_cells.py with s2sphere and dicts, run sequentially.

    Returns (token, count, mean lat, mean lon) per class, in class order.
    """
    photos = []
    for a, b in zip(lat, lon, strict=True):
        cell = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b))
        photos.append([a, b, cell.parent(2).to_token(), cell])
    h = dict(Counter(p[2] for p in photos))

    def delete(photos: list, h: dict) -> tuple[list, dict]:
        dropped = {k for k, v in h.items() if v <= tau_min}
        return [p for p in photos if p[2] not in dropped], {
            k: v for k, v in h.items() if v > tau_min
        }

    photos, h = delete(photos, h)
    level = 2
    while any(v > tau_max for v in h.values()) and level < 30:
        level += 1
        new_h: dict[str, int] = {}
        for p in photos:
            if h[p[2]] > tau_max:
                p[2] = p[3].parent(level).to_token()
            new_h[p[2]] = new_h.get(p[2], 0) + 1
        h = new_h
    photos, h = delete(photos, h)
    sums = {k: [0.0, 0.0] for k in h}
    for p in photos:
        sums[p[2]][0] += p[0]
        sums[p[2]][1] += p[1]
    return [(k, v, sums[k][0] / v, sums[k][1] / v) for k, v in h.items()]


def _clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around a few centres (some on the same spot), and a uniform sprinkle."""
    rng = np.random.default_rng(seed)
    centres = np.array([[48.85, 2.35], [40.7, -74.0], [-33.9, 151.2], [0.0, 179.99], [89.9, 0]])
    k = rng.integers(0, len(centres), n)
    spread = rng.choice([0.0, 0.001, 0.05, 2.0], size=n, p=[0.05, 0.3, 0.4, 0.25])
    lat = np.clip(centres[k, 0] + rng.normal(0, 1, n) * spread, -90, 90)
    lon = (centres[k, 1] + rng.normal(0, 1, n) * spread + 180) % 360 - 180
    return lat, lon


def _as_rows(partition: Partition) -> list[tuple[str, int, float, float]]:
    return [
        (token, int(count), float(lat), float(lon))
        for token, count, lat, lon in zip(
            partition.tokens,
            partition.counts,
            partition.lat_mean,
            partition.lon_mean,
            strict=True,
        )
    ]


@pytest.mark.parametrize(("tau_min", "tau_max", "seed"), [(5, 100, 0), (2, 30, 1), (0, 500, 2)])
def test_equals_the_reference_algorithm(tau_min: int, tau_max: int, seed: int) -> None:
    lat, lon = _clustered(3000, seed)
    (ours,) = build_partitions(lat, lon, [PartitionSpec(tau_min, tau_max)])
    expected = _reference(lat, lon, tau_min, tau_max)
    assert [row[:2] for row in _as_rows(ours)] == [row[:2] for row in expected]
    np.testing.assert_allclose(ours.lat_mean, [row[2] for row in expected], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.lon_mean, [row[3] for row in expected], rtol=0, atol=1e-9)
    assert ours.num_images == 3000


def test_several_partitions_in_one_pass_equal_separate_runs() -> None:
    lat, lon = _clustered(2000, 3)
    specs = [PartitionSpec(5, 200), PartitionSpec(5, 50), PartitionSpec(2, 20)]
    together = build_partitions(lat, lon, specs)
    for spec, partition in zip(specs, together, strict=True):
        (alone,) = build_partitions(lat, lon, [spec])
        assert partition.name == spec.name
        assert _as_rows(partition) == _as_rows(alone)


def test_cells_with_tau_min_photos_are_dropped_and_one_more_are_kept() -> None:
    lat = np.array([10.0] * 5 + [-30.0] * 6)
    lon = np.array([10.0] * 5 + [120.0] * 6)
    (partition,) = build_partitions(lat, lon, [PartitionSpec(5, 100)])
    assert partition.counts.tolist() == [6]
    assert partition.levels.tolist() == [2]  # never split: 6 <= tau_max
    assert partition.lat_mean.tolist() == [-30.0]


def test_photos_on_one_spot_stop_splitting_at_level_30() -> None:
    lat = np.full(300, 52.5)
    lon = np.full(300, 13.4)
    (partition,) = build_partitions(lat, lon, [PartitionSpec(5, 100)])
    assert partition.levels.tolist() == [30]
    assert partition.counts.tolist() == [300]


def test_max_level_caps_splitting() -> None:
    lat, lon = _clustered(2000, 4)
    (partition,) = build_partitions(lat, lon, [PartitionSpec(1, 10)], max_level=8)
    assert partition.levels.max() == 8


def test_no_photos_give_empty_partitions() -> None:
    partitions = build_partitions(np.zeros(0), np.zeros(0))
    assert [len(p) for p in partitions] == [0, 0, 0]
    assert partitions[0].classes_containing(s2.leaf_cell_ids([1.0], [2.0])).tolist() == [-1]


def test_invalid_coordinates_are_refused() -> None:
    with pytest.raises(ConfigError, match="2 coordinates"):
        build_partitions([0.0, 91.0, np.nan], [0.0, 0.0, 0.0])


def test_default_specs_are_the_seed_papers() -> None:
    assert [s.name for s in DEFAULT_SPECS] == ["cells_50_5000", "cells_50_2000", "cells_50_1000"]


@pytest.mark.parametrize(
    ("text", "expected"), [("50:5000", (50, 5000)), (" 5 : 100 ", (5, 100)), ("0:1", (0, 1))]
)
def test_spec_parses(text: str, expected: tuple[int, int]) -> None:
    spec = PartitionSpec.parse(text)
    assert (spec.tau_min, spec.tau_max) == expected


@pytest.mark.parametrize("text", ["50", "50:", "a:b", "-1:5", "50:50", "100:50", "5:10:20"])
def test_bad_specs_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        PartitionSpec.parse(text)


def test_overlapping_cells_are_refused() -> None:
    leaf = s2.leaf_cell_ids([10.0], [20.0])
    ids = np.concatenate([s2.parent_ids(leaf, 5), s2.parent_ids(leaf, 9)])
    with pytest.raises(ConfigError, match="overlap"):
        Partition("p", ids, np.ones(2, np.int64), np.zeros(2), np.zeros(2), 2)


def test_classes_containing_finds_only_cells_that_contain() -> None:
    leaves = s2.leaf_cell_ids([10.0, -40.0], [20.0, 100.0])
    cells = s2.parent_ids(leaves, 7)
    partition = Partition("p", cells, np.ones(2, np.int64), np.zeros(2), np.zeros(2), 2)
    outside = s2.leaf_cell_ids([11.0], [-20.0])
    queries = np.concatenate([leaves[::-1], outside, s2.parent_ids(leaves[:1], 12)])
    assert partition.classes_containing(queries).tolist() == [1, 0, -1, 0]
    # A cell coarser than the partition's cell is not contained in it.
    assert partition.classes_containing(s2.parent_ids(leaves[:1], 6)).tolist() == [-1]


@pytest.fixture(scope="module")
def dev_coordinates(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    with (shared_data / "im2gps3k-dev" / "dev.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([float(r["LAT"]) for r in rows]), np.array([float(r["LON"]) for r in rows])


DEV_SPECS = [PartitionSpec(5, 100), PartitionSpec(2, 40), PartitionSpec(1, 15)]


def test_dev_partitions_keep_the_invariants(dev_coordinates: tuple) -> None:
    lat, lon = dev_coordinates
    partitions = build_partitions(lat, lon, DEV_SPECS)
    classes = assign_classes(lat, lon, partitions)  # (N, P)
    for j, (spec, partition) in enumerate(zip(DEV_SPECS, partitions, strict=True)):
        assert len(partition) > 10
        assert partition.levels.max() > 5  # the thresholds made cells split
        # No two cells overlap (checked with s2sphere, independently of our own check).
        cells = sorted(s2sphere.CellId(int(c)) for c in partition.cell_ids)
        assert not any(a.intersects(b) for a, b in itertools.pairwise(cells))
        assert (partition.counts > spec.tau_min).all()
        assert ((partition.counts <= spec.tau_max) | (partition.levels == 30)).all()
        # Counts sum to the photos that got a class, and are those photos' counts.
        assert int(partition.counts.sum()) == int((classes[:, j] >= 0).sum())
        assert np.bincount(classes[classes[:, j] >= 0, j], minlength=len(partition)).tolist() == (
            partition.counts.tolist()
        )


def test_dev_partitions_are_deterministic_in_first_photo_order(dev_coordinates: tuple) -> None:
    lat, lon = dev_coordinates
    first = build_partitions(lat, lon, DEV_SPECS)
    second = build_partitions(lat.copy(), lon.copy(), DEV_SPECS)
    classes = assign_classes(lat, lon, first)
    for j, (a, b) in enumerate(zip(first, second, strict=True)):
        assert _as_rows(a) == _as_rows(b)
        # Class k's first photo comes before class k + 1's.
        rows = classes[:, j]
        first_rows = [int(np.flatnonzero(rows == k)[0]) for k in range(len(a))]
        assert first_rows == sorted(first_rows)


def test_a_partition_round_trips_through_its_plain_form() -> None:
    rng = np.random.default_rng(5)
    (partition,) = build_partitions(
        rng.uniform(40, 50, 300), rng.uniform(0, 10, 300), [PartitionSpec(2, 40)]
    )
    data = partition.to_dict()
    assert data["levels"] == partition.levels.tolist()
    again = Partition.from_dict(data)
    assert again.tokens == partition.tokens and again.name == partition.name
    assert again.lat_mean.tolist() == partition.lat_mean.tolist()
    with pytest.raises(ConfigError, match="malformed partition"):
        Partition.from_dict({**data, "tokens": ["zz"] * len(partition)})


def test_a_cells_radius_reaches_its_farthest_corner_from_the_class_point() -> None:
    # One level-10 cell (about 8 km wide) with its point at a corner-ish photo, one level-2 cell.
    lat, lon = np.array([48.85, 10.0]), np.array([2.35, 20.0])
    leaves = s2.leaf_cell_ids(lat, lon)
    cells = np.array([s2.parent_ids(leaves[:1], 10)[0], s2.parent_ids(leaves[1:], 2)[0]])
    partition = Partition("p", cells, np.ones(2, dtype=np.int64), lat, lon, 2)
    corner_lat, corner_lon = s2.vertices(cells)
    for k in range(2):
        distances = haversine_km(lat[k], lon[k], corner_lat[k], corner_lon[k])
        assert partition.radius_km[k] == pytest.approx(distances.max())
    edge = float(
        haversine_km(corner_lat[0, 0], corner_lon[0, 0], corner_lat[0, 1], corner_lon[0, 1])
    )
    assert 5 < edge < 12  # a level-10 cell is 7-10 km wide
    assert edge / 2 < partition.radius_km[0] < 2 * edge
    assert partition.radius_km[1] > 1000  # a level-2 cell is thousands of km wide
    far = partition.far_km(lat[0], lon[0])  # from the first class's point
    assert far[0] == pytest.approx(partition.radius_km[0])
    assert far[1] > float(haversine_km(lat[0], lon[0], lat[1], lon[1]))
