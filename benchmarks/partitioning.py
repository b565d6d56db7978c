"""How long adaptive S2 partitioning takes: the vectorised code against a pure-s2sphere loop.

The coordinates are half uniform on the sphere and half clustered around a few hundred "cities"
(some photos sharing one exact position, as landmark photos do), so cells split deep, down to
level 30 in places. The pure-s2sphere loop does, per photo, what GeoEstimation's
`create_cells.py` asks of s2sphere: the photo's leaf cell, then the parent token at every level
the photo's cell passes through, in each partition. It runs on a subsample and is extrapolated
linearly to n; its dict bookkeeping is left out, so the extrapolation is a lower bound.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

CITIES = 300
S2SPHERE_SAMPLE = 20_000


def coordinates(n: int, seed: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(lat, lon) in degrees: n // 2 uniform on the sphere, the rest around CITIES cities."""
    rng = np.random.default_rng(seed)
    n_uniform = n // 2
    n_city = n - n_uniform
    lat_u = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n_uniform)))
    lon_u = rng.uniform(-180.0, 180.0, n_uniform)
    centre_lat = np.degrees(np.arcsin(rng.uniform(-0.8, 0.9, CITIES)))
    centre_lon = rng.uniform(-180.0, 180.0, CITIES)
    weights = 1.0 / np.arange(1, CITIES + 1)  # Zipf: a few cities hold most photos
    city = rng.choice(CITIES, size=n_city, p=weights / weights.sum())
    spread = rng.exponential(0.05, n_city)  # degrees, a few km
    spread[rng.random(n_city) < 0.01] = 0.0  # 1 % share their city's exact position
    lat_c = np.clip(centre_lat[city] + rng.normal(0.0, 1.0, n_city) * spread, -90.0, 90.0)
    lon_c = (centre_lon[city] + rng.normal(0.0, 1.0, n_city) * spread + 180.0) % 360.0 - 180.0
    return np.concatenate([lat_u, lat_c]), np.concatenate([lon_u, lon_c])


def _s2sphere_loop(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], final_levels: npt.NDArray[np.int64]
) -> tuple[float, npt.NDArray[np.uint64]]:
    """Seconds for s2sphere's per-photo work, and the leaf ids it computed."""
    import s2sphere  # noqa: PLC0415

    ids = np.empty(lat.shape[0], dtype=np.uint64)
    start = time.perf_counter()
    for k in range(lat.shape[0]):
        cell = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat[k], lon[k]))
        ids[k] = cell.id()
        for final in final_levels[k]:
            for level in range(2, int(final) + 1):
                cell.parent(level).to_token()
    return time.perf_counter() - start, ids


def run(n: int = 5_000_000, seed: int = 0) -> dict[str, Any]:
    """Time partitioning n random coordinates into the three default partitions."""
    from geoverdict_training.data.labels import assign_classes  # noqa: PLC0415
    from geoverdict_training.geo import s2  # noqa: PLC0415
    from geoverdict_training.geo.partitions import DEFAULT_SPECS, build_partitions  # noqa: PLC0415

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    lat, lon = coordinates(n, seed)

    start = time.perf_counter()
    s2.leaf_cell_ids(lat, lon)
    leaf_ids_s = time.perf_counter() - start

    start = time.perf_counter()
    partitions = build_partitions(lat, lon, DEFAULT_SPECS)
    partition_s = time.perf_counter() - start

    sample = np.random.default_rng(seed + 1).choice(n, size=min(n, S2SPHERE_SAMPLE), replace=False)
    classes = assign_classes(lat[sample], lon[sample], partitions)  # (m, P)
    # Photos left without a class still cost their level-2 token.
    final_levels = np.stack(
        [
            np.where(classes[:, j] >= 0, p.levels[np.maximum(classes[:, j], 0)], 2)
            for j, p in enumerate(partitions)
        ],
        axis=1,
    )
    loop_s, loop_ids = _s2sphere_loop(lat[sample], lon[sample], final_levels)
    extrapolated_s = loop_s * n / sample.shape[0]
    return {
        "n": n,
        "seed": seed,
        "leaf_ids_s": leaf_ids_s,
        "partition_s": partition_s,
        "points_per_s": n / partition_s,
        "classes": {p.name: len(p) for p in partitions},
        "deepest_level": {p.name: int(p.levels.max(initial=0)) for p in partitions},
        "s2sphere_sample": int(sample.shape[0]),
        "s2sphere_sample_s": loop_s,
        "s2sphere_extrapolated_s": extrapolated_s,
        "speedup": extrapolated_s / partition_s,
        "sample_ids_match_s2sphere": bool(
            np.array_equal(loop_ids, s2.leaf_cell_ids(lat[sample], lon[sample]))
        ),
    }


def report(result: dict[str, Any]) -> str:
    """The result in a few lines for people."""
    classes = ", ".join(
        f"{name} {count} (to level {result['deepest_level'][name]})"
        for name, count in result["classes"].items()
    )
    return "\n".join(
        [
            f"partitioning {result['n']:,} random coordinates (half uniform, half around "
            f"{CITIES} cities), seed {result['seed']}",
            f"  S2 leaf cell ids, numpy:          {result['leaf_ids_s']:8.2f} s",
            f"  three partitions, numpy, total:   {result['partition_s']:8.2f} s "
            f"({result['points_per_s']:,.0f} points/s)",
            f"  classes: {classes}",
            f"  pure-s2sphere loop: {result['s2sphere_sample_s']:.2f} s on "
            f"{result['s2sphere_sample']:,} points, EXTRAPOLATED to {result['n']:,}: "
            f"{result['s2sphere_extrapolated_s']:,.0f} s ({result['speedup']:.0f}x slower; a "
            "lower bound, without its dict bookkeeping)",
            f"  numpy leaf ids equal s2sphere's on the sample: "
            f"{result['sample_ids_match_s2sphere']}",
        ]
    )
