"""Adaptive S2 partitions of photo coordinates into classes, the seed paper's algorithm.

Every photo starts in its level-2 cell. Cells holding `tau_min` photos or fewer are dropped; then,
level by level up to 30, every cell holding more than `tau_max` photos is replaced by its
children, each photo moving to the child containing it; finally small cells are dropped again
(GeoEstimation's `create_cells.py`, `count <= tau_min` as there). A class is a kept cell; its
point is the mean latitude / longitude of its photos, not the cell centre.

Class order: the reference numbers cells in the order their first photo appears in the input
(a dict filled while walking the photos). We do the same, without the reference's parallel map,
which may permute chunks of 1000 rows; so the same input always gives the same class indices.

Photos are sorted once by leaf cell id. Cells at any level are contiguous runs of that order
(the Hilbert curve nests), so counting a level is a comparison of neighbours, with no hashing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from geoverdict_common.distances import haversine_km
from geoverdict_training.exceptions import ConfigError, DataFileError
from geoverdict_training.geo import s2

MIN_LEVEL = 2


@dataclass(frozen=True)
class PartitionSpec:
    """Thresholds of one partition: cells keep more than `tau_min` and at most `tau_max` photos."""

    tau_min: int
    tau_max: int

    def __post_init__(self) -> None:
        if self.tau_min < 0:
            raise ConfigError(f"tau_min must be >= 0, got {self.tau_min}")
        if self.tau_max <= self.tau_min:
            raise ConfigError(f"tau_max must be > tau_min, got {self.tau_min}:{self.tau_max}")

    @property
    def name(self) -> str:
        """The stem of its cells file, `cells_TAUMIN_TAUMAX`, as the public files are named."""
        return f"cells_{self.tau_min}_{self.tau_max}"

    @classmethod
    def parse(cls, text: str) -> PartitionSpec:
        """Read `TAU_MIN:TAU_MAX`, e.g. `50:5000`."""
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
        if match is None:
            raise ConfigError(f"a partition is TAU_MIN:TAU_MAX (e.g. 50:5000), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))


# Coarse, middle, fine: the seed paper's three MP-16 partitions.
DEFAULT_SPECS = (PartitionSpec(50, 5000), PartitionSpec(50, 2000), PartitionSpec(50, 1000))


@dataclass(eq=False)
class Partition:
    """Classes of one partition; class k is cell `cell_ids[k]`."""

    name: str
    cell_ids: npt.NDArray[np.uint64]  # (C,)
    counts: npt.NDArray[np.int64]  # (C,) photos per class
    lat_mean: npt.NDArray[np.float64]  # (C,) degrees
    lon_mean: npt.NDArray[np.float64]  # (C,) degrees
    num_images: int  # photos the partition was built from, kept or not
    _by_range: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        size = self.cell_ids.shape[0]
        for other in (self.counts, self.lat_mean, self.lon_mean):
            if other.shape != (size,):
                raise ConfigError(f"partition {self.name}: arrays differ in length")
        if not s2.is_valid(self.cell_ids).all():
            raise ConfigError(f"partition {self.name}: not every id is a valid S2 cell")
        order = np.argsort(self.cell_ids, kind="stable").astype(np.int64)
        lo = s2.range_min(self.cell_ids[order])
        hi = s2.range_max(self.cell_ids[order])
        overlapping = np.flatnonzero(lo[1:] <= hi[:-1])
        if overlapping.size:
            a, b = order[overlapping[0]], order[overlapping[0] + 1]
            raise ConfigError(f"partition {self.name}: classes {a} and {b} overlap")
        self._by_range = (lo, hi, order)

    def __len__(self) -> int:
        return int(self.cell_ids.shape[0])

    @cached_property
    def tokens(self) -> list[str]:
        """S2 token of each class."""
        return s2.to_tokens(self.cell_ids)

    @cached_property
    def levels(self) -> npt.NDArray[np.int64]:
        """S2 level of each class."""
        return s2.levels(self.cell_ids)

    @cached_property
    def vertices(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Latitude and longitude (C, 4) of the corners of each class's cell, in degrees."""
        return s2.vertices(self.cell_ids)

    @cached_property
    def radius_km(self) -> npt.NDArray[np.float64]:
        """(C,) how far a photo of each class can lie from the class's point: the greatest
        distance from the point (its photos' mean, not the cell centre) to the cell's corners."""
        return self.far_km(self.lat_mean, self.lon_mean)

    def far_km(self, lat: npt.ArrayLike, lon: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(C,) distance from the point(s) (C,) or () to the farthest corner of each class's
        cell: the cell lies entirely within that distance (its edges are great-circle arcs much
        shorter than the distances that matter, so the farthest point is a corner)."""
        corner_lat, corner_lon = self.vertices  # (C, 4)
        lat_arr = np.asarray(lat, dtype=np.float64)[..., None]
        lon_arr = np.asarray(lon, dtype=np.float64)[..., None]
        return haversine_km(lat_arr, lon_arr, corner_lat, corner_lon).max(axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (S2 tokens, not ids), for checkpoints and model archives."""
        return {
            "name": self.name,
            "tokens": self.tokens,
            "levels": self.levels.tolist(),  # for readers; from_dict derives them from tokens
            "counts": self.counts.tolist(),
            "lat_mean": self.lat_mean.tolist(),
            "lon_mean": self.lon_mean.tolist(),
            "num_images": self.num_images,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Partition:
        """Inverse of to_dict; a malformed entry raises ConfigError."""
        try:
            return cls(
                name=str(data["name"]),
                cell_ids=s2.from_tokens(list(data["tokens"])),
                counts=np.asarray(data["counts"], dtype=np.int64),
                lat_mean=np.asarray(data["lat_mean"], dtype=np.float64),
                lon_mean=np.asarray(data["lon_mean"], dtype=np.float64),
                num_images=int(data["num_images"]),
            )
        except (KeyError, TypeError, ValueError, DataFileError) as exc:
            raise ConfigError(f"malformed partition {data.get('name', '?')!r}: {exc}") from exc

    def classes_containing(self, cell_ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Class whose cell contains each given cell (leaf ids for photos), -1 where none does."""
        lo, hi, order = self._by_range
        if lo.size == 0:
            return np.full(cell_ids.shape, -1, dtype=np.int64)
        first = s2.range_min(cell_ids)
        last = s2.range_max(cell_ids)
        # Cells do not overlap: the only candidate is the last one starting at or before `first`.
        k = np.searchsorted(lo, first, side="right") - 1
        found = k >= 0
        k = np.where(found, k, 0)
        found &= last <= hi[k]
        return np.where(found, order[k], -1).astype(np.int64)


def _runs(
    sorted_ids: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start and length of each run of equal values in a sorted array."""
    n = sorted_ids.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1))
    return starts.astype(np.int64), np.diff(np.append(starts, n)).astype(np.int64)


def _partition_sorted(
    sorted_leaves: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64],
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    *,
    spec: PartitionSpec,
    max_level: int,
) -> Partition:
    """One partition from leaf ids sorted ascending; `rows[k]` is the input row of leaf k."""
    cells = s2.parent_ids(sorted_leaves, MIN_LEVEL)  # (N,) stays sorted as cells split
    _, counts = _runs(cells)
    keep = np.repeat(counts > spec.tau_min, counts)  # dropped before splitting
    in_play = np.flatnonzero(keep)  # (M,) positions in the sorted order
    cells = cells[in_play]
    active = np.flatnonzero(np.repeat(counts, counts)[keep] > spec.tau_max)  # photos to split
    level = MIN_LEVEL
    while active.size and level < max_level:
        level += 1
        children = s2.parent_ids(sorted_leaves[in_play[active]], level)
        cells[active] = children
        _, child_counts = _runs(children)
        active = active[np.repeat(child_counts > spec.tau_max, child_counts)]

    starts, counts = _runs(cells)
    kept = counts > spec.tau_min  # dropped after splitting
    photo_rows = rows[in_play]
    if starts.size == 0:
        first_rows = np.zeros(0, dtype=np.int64)
        lat_sum = lon_sum = np.zeros(0, dtype=np.float64)
    else:
        first_rows = np.minimum.reduceat(photo_rows, starts)[kept]
        lat_sum = np.add.reduceat(lat[photo_rows], starts)[kept]
        lon_sum = np.add.reduceat(lon[photo_rows], starts)[kept]
    counts = counts[kept]
    by_first_photo = np.argsort(first_rows, kind="stable")
    return Partition(
        name=spec.name,
        cell_ids=cells[starts[kept]][by_first_photo],
        counts=counts[by_first_photo],
        lat_mean=(lat_sum / counts)[by_first_photo],
        lon_mean=(lon_sum / counts)[by_first_photo],
        num_images=int(sorted_leaves.shape[0]),
    )


def build_partitions(
    lat: npt.ArrayLike,
    lon: npt.ArrayLike,
    specs: Sequence[PartitionSpec] = DEFAULT_SPECS,
    max_level: int = s2.MAX_LEVEL,
) -> list[Partition]:
    """Partitions of the points (degrees) for each spec, in one pass."""
    if not MIN_LEVEL <= max_level <= s2.MAX_LEVEL:
        raise ConfigError(f"max_level must be in [{MIN_LEVEL}, {s2.MAX_LEVEL}], got {max_level}")
    lat_arr = np.asarray(lat, dtype=np.float64).ravel()  # (N,)
    lon_arr = np.asarray(lon, dtype=np.float64).ravel()  # (N,)
    with np.errstate(invalid="ignore"):
        bad = ~((np.abs(lat_arr) <= 90) & (np.abs(lon_arr) <= 180))  # NaN is bad too
    if bad.any():
        raise ConfigError(f"{int(bad.sum())} coordinates are not valid degrees (lat, lon)")
    leaves = s2.leaf_cell_ids(lat_arr, lon_arr)
    rows = np.argsort(leaves, kind="stable").astype(np.int64)
    sorted_leaves = leaves[rows]
    return [
        _partition_sorted(sorted_leaves, rows, lat_arr, lon_arr, spec=spec, max_level=max_level)
        for spec in specs
    ]
