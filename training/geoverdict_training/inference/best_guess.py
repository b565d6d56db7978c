"""The best guess: one point chosen by decision theory from the predicted distribution.

The distribution over the fine cells says where the photo may have been taken; the best guess
is the point an analyst should act on. The most probable cell's point is a poor choice when the
distribution is nearly flat (the demo model's top cell holds about 4 % of the mass): its argmax
is noise. The default rule answers the point of least EXPECTED great-circle distance to the
truth, each cell's mass placed at its point (the mean position of its training photos):

    guess = argmin_g  sum_c p(c) * d(g, point_c)

The other rule, `mass_within:R`, answers the point with the most probability within R km
(argmax_g sum_c p(c) [d(g, point_c) <= R]): the best choice where only "within R km or not"
counts, e.g. R = 2,500 km for "the right continent". docs/verdicts.md says when to choose it.

Candidates lie inside the model's cells, so that every guess has a cell (its token, level,
probability and extent) and a place name: the points of the cells holding 99.9 % of the mass
(at most MAX_CELLS), then, within the REFINE_CELLS best of those, the centres of each cell's
descendants REFINE_LEVELS S2 levels down (64 points a cell, as wide as the cell is): a refinement
within the predicted cells, as PIGEON refines its guesses. The cost is independent of the number
of cells beyond MAX_CELLS: about 10,000 + 320 x MAX_CELLS distances per image.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from geoverdict_common.distances import haversine_km
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import Partition

EXPECTED_DISTANCE = "expected_distance"
MASS_WITHIN = "mass_within"
RULES = (EXPECTED_DISTANCE, MASS_WITHIN)
MASS = 0.999  # the cells whose mass the guess weighs: all but the last 0.1 %
MAX_CELLS = 200
REFINE_CELLS = 5  # cells searched inside, the best by the rule among the cells' points
REFINE_LEVELS = 3  # 4^3 = 64 candidate points inside each of them


@dataclass(frozen=True)
class GuessRule:
    """How the best guess is chosen: `expected_distance`, or `mass_within` R km."""

    kind: str = EXPECTED_DISTANCE
    radius_km: float = 0.0  # mass_within only

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ConfigError(f"best guess rule: must be one of {RULES}, got {self.kind!r}")
        if self.kind == MASS_WITHIN and not (math.isfinite(self.radius_km) and self.radius_km > 0):
            raise ConfigError(f"best guess rule {MASS_WITHIN}: radius must be > 0 km")

    @classmethod
    def parse(cls, text: str) -> GuessRule:
        """`expected_distance` or `mass_within:R` (R in km), as settings and metadata write it."""
        kind, _, radius = str(text).strip().partition(":")
        if kind == MASS_WITHIN:
            try:
                return cls(kind, float(radius))
            except ValueError as exc:
                raise ConfigError(
                    f"best guess rule: {MASS_WITHIN} needs a radius in km, e.g. "
                    f"'{MASS_WITHIN}:2500', got {text!r}"
                ) from exc
        if radius:
            raise ConfigError(f"best guess rule: {kind!r} takes no radius, got {text!r}")
        return cls(kind)

    def __str__(self) -> str:
        return f"{MASS_WITHIN}:{self.radius_km:g}" if self.kind == MASS_WITHIN else self.kind

    def losses(self, distances_km: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The loss of answering a point at these distances from where the photo was taken."""
        if self.kind == MASS_WITHIN:
            return (distances_km > self.radius_km).astype(np.float64)
        return distances_km


@dataclass(frozen=True)
class Guess:
    """The chosen point, the class of the cell holding it, and its expected error."""

    lat: float
    lon: float
    cell: int  # class of the fine partition whose cell holds the point
    expected_km: float  # expected distance from the point to the truth, under the distribution


def _unit(lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def _centres(ids: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.float64], ...]:
    """Latitude and longitude of S2 cells' centres: their corners' mean direction (the cells
    are small enough here for that to lie inside them)."""
    corner_lat, corner_lon = s2.vertices(ids)  # (N, 4)
    mean = _unit(corner_lat, corner_lon).sum(axis=1)  # (N, 3)
    x, y, z = mean[:, 0], mean[:, 1], mean[:, 2]
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


@functools.lru_cache(maxsize=8)
def inner_points(fine: Partition) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(C, 64) latitudes and longitudes of candidate points inside each class's cell: the
    centres of its descendants REFINE_LEVELS levels down (a cell finer than level 27 answers
    its own centre 64 times)."""
    ids = fine.cell_ids  # (C,)
    levels = s2.levels(ids)
    deep = levels + REFINE_LEVELS <= s2.MAX_LEVEL
    # Descendant k of a cell, n levels down: range_min - 1 + (2k + 1) * lsb(level + n).
    lsb = np.array(
        [
            s2.lsb_for_level(int(level) + REFINE_LEVELS) if ok else 1
            for level, ok in zip(levels, deep, strict=True)
        ],
        dtype=np.uint64,
    )
    odd = 2 * np.arange(4**REFINE_LEVELS, dtype=np.uint64) + np.uint64(1)  # (64,)
    below = s2.range_min(ids)[:, None] - np.uint64(1) + odd[None, :] * lsb[:, None]  # (C, 64)
    children = np.where(deep[:, None], below, ids[:, None])
    lat, lon = _centres(children.ravel())
    return lat.reshape(children.shape), lon.reshape(children.shape)


def best_guess(fine: Partition, p: npt.NDArray[np.float64], rule: GuessRule) -> Guess:
    """The best guess for one photo's distribution `p` (C,) over the fine classes."""
    order = np.argsort(-p, kind="stable")
    cumulative = np.cumsum(p[order])
    count = min(int(np.searchsorted(cumulative, MASS * cumulative[-1])) + 1, MAX_CELLS, p.size)
    cells = order[:count]  # (K,) the classes weighed
    mass = p[cells] / p[cells].sum()
    lat_c, lon_c = fine.lat_mean[cells], fine.lon_mean[cells]  # (K,)

    def scores(lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]) -> npt.NDArray:
        distances = haversine_km(lat[:, None], lon[:, None], lat_c[None, :], lon_c[None, :])
        return rule.losses(distances) @ mass  # (G,) expected loss of each candidate

    first = scores(lat_c, lon_c)  # the cells' own points
    refined = cells[np.argsort(first, kind="stable")[:REFINE_CELLS]]
    inner_lat, inner_lon = inner_points(fine)
    lat = np.concatenate([lat_c, inner_lat[refined].ravel()])
    lon = np.concatenate([lon_c, inner_lon[refined].ravel()])
    owner = np.concatenate([cells, np.repeat(refined, inner_lat.shape[1])])
    score = np.concatenate([first, scores(inner_lat[refined].ravel(), inner_lon[refined].ravel())])
    best = int(np.argmin(score))  # the first of equals: a cell's own point before inner ones
    expected = haversine_km(lat[best], lon[best], lat_c, lon_c) @ mass
    return Guess(float(lat[best]), float(lon[best]), int(owner[best]), float(expected))


def guess_points(
    fine: Partition, probabilities: npt.NDArray[np.float64], rule: GuessRule
) -> npt.NDArray[np.float64]:
    """(N, 2) latitude and longitude of the best guess of each row of `probabilities` (N, C)."""
    rows = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(fine))
    chosen = [best_guess(fine, p, rule) for p in rows]
    return np.array([[g.lat, g.lon] for g in chosen], dtype=np.float64).reshape(-1, 2)
