"""Distances on the sphere, cells' extents, probability near a point, the precision floor,
place names."""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from geoverdict_common.contract_types import Place
from geoverdict_common.distances import EARTH_RADIUS_KM, haversine_km

log = logging.getLogger(__name__)

KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180.0
# S2's minimum edge metric: no edge of any level-L cell is shorter than this / 2**L (about
# 6,007 km; the average edge is 9,297 km and the longest 10,862 km).
S2_MIN_EDGE_KM = 2 * math.sqrt(2) / 3 * EARTH_RADIUS_KM
# S2's maximum diagonal metric (quadratic projection): no level-L cell spans more than this / 2**L.
S2_MAX_DIAG_KM = 2.438654594434021 * EARTH_RADIUS_KM


def cell_radius_km(cell: Mapping[str, Any]) -> float:
    """How far from its point a photo of this cell can lie: the model's `radius_km`, or for
    replies of archives made before it existed, the widest a cell of its level can be."""
    radius = cell.get("radius_km")
    if radius is not None:
        return float(radius)
    return S2_MAX_DIAG_KM / 2 ** int(cell["level"])


def masses_within(
    cells: Sequence[Mapping[str, Any]], lat: float, lon: float, limits_km: Sequence[float]
) -> list[float]:
    """For each limit, the probability that the photo was taken within it of (lat, lon): each
    cell's probability times the share of the cell inside that circle (cells have an extent: a
    level-2 cell thousands of km wide is not all-or-nothing at its mean point). One pass over
    the cells for every limit (a calibrated reply lists most of them)."""
    if not cells:
        return [0.0] * len(limits_km)
    # (n, 5): probability, lat, lon, radius (NaN where the reply has none), level
    rows = np.array(
        [(c["probability"], c["lat"], c["lon"], c.get("radius_km"), c["level"]) for c in cells],
        dtype=np.float64,
    )
    p, radius = rows[:, 0], rows[:, 3]
    missing = np.isnan(radius)
    if missing.any():  # replies of archives made before radius_km: the widest a cell can be
        radius[missing] = S2_MAX_DIAG_KM / 2.0 ** rows[missing, 4]
    distance = haversine_km(lat, lon, rows[:, 1], rows[:, 2])  # (n,)
    limits = np.asarray(limits_km, dtype=np.float64)[:, None]  # (k, 1)
    # The share of each cell, taken as a disc of its radius around its point, that lies within
    # each limit: 1 inside, 0 outside, linear across (a point cell: all or nothing). (k, n)
    wide = np.clip((limits - (distance - radius)) / np.maximum(2 * radius, 1e-12), 0.0, 1.0)
    share = np.where(radius > 0, wide, distance <= limits)
    return [float(m) for m in share @ p]


def coarsen(lat: float, lon: float, precision_km: float) -> tuple[float, float]:
    """Snap a point to the centre of a grid square about `precision_km` wide (0: unchanged)."""
    if precision_km <= 0:
        return lat, lon
    step_lat = precision_km / KM_PER_DEGREE
    snapped_lat = (math.floor(lat / step_lat) + 0.5) * step_lat
    snapped_lat = max(-90.0, min(90.0, snapped_lat))
    # Longitude steps widen towards the poles so squares stay about precision_km wide.
    width = max(math.cos(math.radians(snapped_lat)), 1e-6) * KM_PER_DEGREE
    step_lon = min(360.0, precision_km / width)
    snapped_lon = (math.floor((lon + 180.0) / step_lon) + 0.5) * step_lon - 180.0
    return round(snapped_lat, 6), round(max(-180.0, min(180.0, snapped_lon)), 6)


def s2_level_for(precision_km: float) -> int:
    """The finest S2 level whose cells all have edges of `precision_km` or longer.

    The bound is S2's shortest edge, not its average: near the face corners a cell is about
    0.6 times as wide as an average one, and a precision floor must hold for every cell.
    """
    if precision_km <= 0:
        return 30
    return max(0, min(30, math.floor(math.log2(S2_MIN_EDGE_KM / precision_km))))


def parent_token(token: str, level: int) -> str:
    """The S2 token of the ancestor at `level` of the cell `token` (no S2 library needed)."""
    cell_id = int(token.ljust(16, "0"), 16)
    lsb = cell_id & -cell_id
    current = (60 - (lsb.bit_length() - 1)) // 2
    if level >= current:
        return token
    new_lsb = 1 << (2 * (30 - level))
    parent = (cell_id & -new_lsb) | new_lsb
    return f"{parent:016x}".rstrip("0") or "X"


class PlaceNames:
    """Offline reverse geocoding (GeoNames cities >1000 people, from `reverse_geocoder`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._geocoder: Any = None

    def warm_up(self) -> None:
        """Load the GeoNames table now (about a second) rather than on the first verdict."""
        with self._lock:
            if self._geocoder is None:
                import reverse_geocoder  # noqa: PLC0415 (a second of start-up, only when used)

                self._geocoder = reverse_geocoder.RGeocoder(mode=1, verbose=False)

    def lookup(self, lat: float, lon: float) -> Place | None:
        """City, region and country code of the nearest known place, or None.

        Best guesses are the model's class points, a few thousand at most, so answers are
        remembered (a copy is returned: callers may change it)."""
        place = self._cached(round(lat, 6), round(lon, 6))
        return place.copy() if place is not None else None

    @functools.lru_cache(maxsize=65_536)  # noqa: B019 (one PlaceNames per process)
    def _cached(self, lat: float, lon: float) -> Place | None:
        self.warm_up()
        try:
            (place,) = self._geocoder.query([(lat, lon)])
        except (ValueError, IndexError) as exc:  # pragma: no cover - library guard
            log.warning("reverse geocoding failed for %.3f,%.3f: %s", lat, lon, exc)
            return None
        return {"name": place["name"], "admin1": place["admin1"], "country_code": place["cc"]}
