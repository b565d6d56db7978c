"""The S2 tables the service's tests use (tests/service/s2_reference.py, which must not need
s2sphere) are what s2sphere computes: recomputed here, where s2sphere may be imported."""

from __future__ import annotations

import json
import math
import random
import zipfile

import pytest
import s2sphere

from geoverdict_common.distances import haversine_km
from tests.repo import REPO_ROOT
from tests.service import s2_reference


def cell_id(lat: float, lon: float) -> s2sphere.CellId:
    return s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lon))


def corners(cell: s2sphere.CellId) -> list[tuple[float, float]]:
    vertices = [s2sphere.LatLng.from_point(s2sphere.Cell(cell).get_vertex(k)) for k in range(4)]
    return [(v.lat().degrees, v.lng().degrees) for v in vertices]


def random_points(rng: random.Random, count: int) -> list[tuple[float, float]]:
    """Points uniform on the sphere (latitude by its sine), as the service's tests drew them."""
    return [
        (math.degrees(math.asin(rng.uniform(-1, 1))), rng.uniform(-180, 180)) for _ in range(count)
    ]


def test_the_sample_points_level_13_tokens() -> None:
    for (lat, lon), token in s2_reference.LEVEL_13_TOKENS.items():
        assert cell_id(lat, lon).parent(13).to_token() == token


def test_the_parent_tokens() -> None:
    rng = random.Random(11)
    expected = []
    for lat, lon in random_points(rng, 40):
        level = rng.randint(0, 30)
        leaf = cell_id(lat, lon)
        token = leaf.parent(level).to_token()
        for ancestor in sorted({0, rng.randint(0, level), level, min(30, level + 3)}):
            parent = leaf.parent(ancestor).to_token() if ancestor < level else token
            expected.append((token, ancestor, parent))
    assert expected == s2_reference.PARENT_TOKENS


def test_the_shortest_edges_per_level() -> None:
    rng = random.Random(3)
    extremes = [(90.0, 0.0), (-90.0, 180.0), (0.0, -180.0), (35.26, 45.0), (-35.26, -135.0)]
    leaves = [cell_id(lat, lon) for lat, lon in random_points(rng, 2000) + extremes]
    for level, shortest in s2_reference.MIN_EDGE_KM.items():
        edges = []
        for leaf in leaves:
            c = corners(leaf.parent(level))
            edges += [haversine_km(*a, *b) for a, b in zip(c, c[1:] + c[:1], strict=True)]
        assert min(edges) == pytest.approx(shortest, rel=1e-5), level
    assert s2sphere.MIN_EDGE.deriv() == s2_reference.MIN_EDGE_DERIV


def test_the_demo_archives_cell_radii() -> None:
    archives = sorted((REPO_ROOT / "model_store").glob("*.mar"))
    if not archives:
        pytest.skip("no archive in model_store/")
    with zipfile.ZipFile(archives[0]) as mar:
        fine = json.loads(mar.read("metadata.json"))["partitions"][-1]
    radii = {}
    for token, lat, lon in zip(fine["tokens"], fine["lat_mean"], fine["lon_mean"], strict=True):
        cell = s2sphere.CellId.from_token(token)
        radii[token] = max(haversine_km(lat, lon, *corner) for corner in corners(cell))
    assert radii == pytest.approx(s2_reference.DEMO_CELL_RADII_KM, rel=1e-5)
