"""The vectorised S2 maths must give s2sphere's cell ids, tokens and parents, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import s2sphere
import s2sphere.sphere

from geoverdict_training.exceptions import DataFileError
from geoverdict_training.geo import s2

CUBE_CORNER_LAT = float(np.degrees(np.arctan(1 / np.sqrt(2))))  # where |x| = |y| = |z|


def _special_points() -> tuple[np.ndarray, np.ndarray]:
    """Poles, the antimeridian, face edges and cube corners, and their nearest neighbours."""
    lat = [90, -90, 0, 0, 0, 0, 0, 0, 45, -45, CUBE_CORNER_LAT, -CUBE_CORNER_LAT, 89.999999]
    lon = [0, 0, 180, -180, 90, -90, 45, -135, 180, -180, 45, -135, 180]
    # Face boundaries: longitudes of 45 + 90k degrees at the equator, latitudes near 35.26.
    for edge in (-135.0, -45.0, 45.0, 135.0):
        for delta in (-1e-9, 0.0, 1e-9):
            lat.append(0.0)
            lon.append(edge + delta)
    lat_arr, lon_arr = np.array(lat, dtype=np.float64), np.array(lon, dtype=np.float64)
    # One float step either side of every special point.
    lat_all = [lat_arr, np.nextafter(lat_arr, 0.0), np.clip(np.nextafter(lat_arr, 91.0), -90, 90)]
    lon_all = [lon_arr, np.nextafter(lon_arr, 0.0), np.clip(np.nextafter(lon_arr, 181), -180, 180)]
    return np.concatenate(lat_all), np.concatenate(lon_all)


def _random_points(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)


def _s2sphere_leaf(lat: float, lon: float) -> s2sphere.CellId:
    return s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lon))


@pytest.fixture(scope="module")
def points() -> tuple[np.ndarray, np.ndarray]:
    lat_s, lon_s = _special_points()
    lat_r, lon_r = _random_points(20_000)
    return np.concatenate([lat_s, lat_r]), np.concatenate([lon_s, lon_r])


def test_lookup_table_is_s2spheres() -> None:
    assert s2._LOOKUP_POS.tolist() == list(s2sphere.sphere.LOOKUP_POS)


def test_leaf_ids_equal_s2sphere_on_random_and_special_points(points: tuple) -> None:
    lat, lon = points
    ours = s2.leaf_cell_ids(lat, lon)
    expected = np.array(
        [_s2sphere_leaf(a, b).id() for a, b in zip(lat, lon, strict=True)], dtype=np.uint64
    )
    mismatches = np.flatnonzero(ours != expected)
    assert mismatches.size == 0, [(lat[k], lon[k]) for k in mismatches[:5]]


def test_every_face_is_reached(points: tuple) -> None:
    faces = s2.leaf_cell_ids(*points) >> np.uint64(61)
    assert set(faces.tolist()) == {0, 1, 2, 3, 4, 5}


def test_parents_levels_ranges_and_tokens_equal_s2sphere(points: tuple) -> None:
    lat, lon = points
    leaves = s2.leaf_cell_ids(lat[:3000], lon[:3000])
    rng = np.random.default_rng(3)
    for level in sorted({0, 1, 2, 13, 29, 30, *rng.integers(0, 31, 6).tolist()}):
        parents = s2.parent_ids(leaves, level)
        ref = [s2sphere.CellId(int(leaf)).parent(level) for leaf in leaves]
        assert parents.tolist() == [cell.id() for cell in ref]
        assert (s2.levels(parents) == level).all()
        assert s2.to_tokens(parents) == [cell.to_token() for cell in ref]
        assert s2.range_min(parents).tolist() == [cell.range_min().id() for cell in ref]
        assert s2.range_max(parents).tolist() == [cell.range_max().id() for cell in ref]


def test_tokens_round_trip() -> None:
    leaves = s2.leaf_cell_ids(*_random_points(500))
    cells = s2.parent_ids(leaves, 11)
    assert s2.from_tokens(s2.to_tokens(cells)).tolist() == cells.tolist()
    assert s2.from_tokens(["8744", "47E66E21"]).tolist() == [
        s2sphere.CellId.from_token("8744").id(),
        s2sphere.CellId.from_token("47e66e21").id(),
    ]


@pytest.mark.parametrize("token", ["", "zz", "12345678901234567", "f", "0"])
def test_a_token_that_names_no_cell_is_refused(token: str) -> None:
    with pytest.raises(DataFileError):
        s2.from_tokens([token])


def test_is_valid_matches_s2sphere() -> None:
    candidates = np.array([0, 1, 2, 3, 4, 0x8744 << 48, 0xF000000000000000, 0x1000], np.uint64)
    expected = [s2sphere.CellId(int(c)).is_valid() for c in candidates]
    assert s2.is_valid(candidates).tolist() == expected


def test_levels_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        s2.parent_ids(np.array([1], dtype=np.uint64), 31)


def test_lat_and_lon_must_have_the_same_length() -> None:
    with pytest.raises(ValueError, match="differ"):
        s2.leaf_cell_ids([1.0, 2.0], [3.0])


def test_cell_corners_are_s2spheres_at_every_level() -> None:
    lat, lon = _random_points(300, seed=11)
    special_lat, special_lon = _special_points()
    lat, lon = np.concatenate([lat, special_lat]), np.concatenate([lon, special_lon])
    leaves = s2.leaf_cell_ids(lat, lon)
    levels = np.arange(leaves.size) % (s2.MAX_LEVEL + 1)  # every level, faces to leaves
    ids = np.array(
        [s2.parent_ids(leaves[k : k + 1], int(levels[k]))[0] for k in range(leaves.size)],
        dtype=np.uint64,
    )
    corner_lat, corner_lon = s2.vertices(ids)
    assert corner_lat.shape == corner_lon.shape == (ids.size, 4)
    for k, cell_id in enumerate(ids):
        cell = s2sphere.Cell(s2sphere.CellId(int(cell_id)))
        for corner in range(4):
            expected = s2sphere.LatLng.from_point(cell.get_vertex(corner))
            assert corner_lat[k, corner] == pytest.approx(expected.lat().degrees, abs=1e-9)
            lon_gap = (corner_lon[k, corner] - expected.lng().degrees + 180.0) % 360.0 - 180.0
            assert abs(lon_gap) < 1e-9 or abs(corner_lat[k, corner]) > 90 - 1e-9  # poles: any lon
