"""Haversine label smoothing: a partition's target spread over the cells near the photo.

Cross-entropy against one cell treats a guess 50 km off like one on another continent. PIGEON
(Haas et al., CVPR 2024) trains against soft targets that decay with distance instead: for a
photo at x, class k of a partition gets

    q_k = exp(-d(x, point_k) / tau) / sum_j exp(-d(x, point_j) / tau)

where point_k is the class's point (the mean position of its training photos) and tau (km) is
chosen per partition: a coarse partition's cells are thousands of km wide, a fine one's can be
tens. tau -> 0 gives back the one-hot target of the nearest class point (close to, though not
always, the class holding x); tau = 0 means "off" here: the hard label. `label_smoothing_km` in
the training config names one tau per partition, coarse -> fine. model_store/README.md says how
the demo model's were chosen (`python -m benchmarks recipes` measures them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from geoverdict_common.distances import haversine_km
from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.geo.partitions import Partition


@dataclass(frozen=True, eq=False)
class HaversineSmoothing:
    """Soft targets for the partition heads whose tau is above 0."""

    points: Mapping[str, tuple[np.ndarray, np.ndarray]]  # head -> class latitudes, longitudes
    taus_km: Mapping[str, float]  # head -> tau (> 0)

    @classmethod
    def for_partitions(
        cls, partitions: Sequence[Partition], taus_km: Sequence[float]
    ) -> HaversineSmoothing | None:
        """The smoothing of `partitions` (coarse -> fine) with one tau each; None when every
        tau is 0 (hard labels) or none is given."""
        if not taus_km or not any(taus_km):
            return None
        if len(taus_km) != len(partitions):
            raise ConfigError(
                f"label_smoothing_km: one tau per partition ({len(partitions)}), got {len(taus_km)}"
            )
        if any(not np.isfinite(tau) or tau < 0 for tau in taus_km):
            raise ConfigError(f"label_smoothing_km: taus must be >= 0 km, got {list(taus_km)}")
        chosen = [(p, float(t)) for p, t in zip(partitions, taus_km, strict=True) if t > 0]
        return cls(
            points={p.name: (p.lat_mean, p.lon_mean) for p, _ in chosen},
            taus_km={p.name: tau for p, tau in chosen},
        )

    def targets(self, coords: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """(B, 2) photo latitudes and longitudes -> head -> (B, n_classes) soft targets."""
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise TensorError(f"coords must be (B, 2) degrees, got {tuple(coords.shape)}")
        lat = coords[:, 0].double().cpu().numpy()[:, None]
        lon = coords[:, 1].double().cpu().numpy()[:, None]
        out = {}
        for head, (point_lat, point_lon) in self.points.items():
            distances = haversine_km(lat, lon, point_lat[None, :], point_lon[None, :])  # (B, C)
            logits = torch.from_numpy(-distances / self.taus_km[head])
            out[head] = logits.softmax(dim=-1).float().to(device, non_blocking=True)
        return out
