"""Training targets of each photo: its class in every partition and its scene labels.

A photo's class in a partition is the class whose cell contains the photo's leaf cell, -1 where
no kept cell does (the photo's cell held too few photos). GeoEstimation's `assign_classes.py`
looks the photo's parents up level by level from 2 to 29; cells do not overlap, so the one
containing cell is the same answer (and a level-30 cell is found too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.vocabulary import SCENE_HEADS


@dataclass(frozen=True, eq=False)
class Labels:
    """Targets of a manifest's photos, row k for photo k; heads are named as the model's are."""

    partition_names: tuple[str, ...]  # (P,) coarse to fine, e.g. cells_50_5000
    classes: npt.NDArray[np.int64]  # (N, P) class per partition, -1 (NO_LABEL) for none
    scenes: npt.NDArray[np.int64]  # (N, 3) S3, S16, S365 labels, -1 where absent

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    @property
    def heads(self) -> tuple[str, ...]:
        """Target names: the partitions, then the scene heads."""
        return (*self.partition_names, *SCENE_HEADS)

    def columns(self) -> dict[str, npt.NDArray[np.int64]]:
        """Head name -> (N,) targets of every photo."""
        targets = np.concatenate([self.classes, self.scenes], axis=1)  # (N, P + 3)
        return {head: targets[:, k] for k, head in enumerate(self.heads)}

    @property
    def complete(self) -> npt.NDArray[np.bool_]:
        """(N,) whether a photo has a class in every partition (the reference trains on these)."""
        return np.all(self.classes >= 0, axis=1)


def assign_classes(
    lat: npt.ArrayLike, lon: npt.ArrayLike, partitions: Sequence[Partition]
) -> npt.NDArray[np.int64]:
    """(N, P) class of each point (degrees) in each partition, -1 where none contains it."""
    leaves = s2.leaf_cell_ids(lat, lon)  # (N,)
    columns = [p.classes_containing(leaves) for p in partitions]
    if not columns:
        return np.zeros((leaves.shape[0], 0), dtype=np.int64)
    return np.stack(columns, axis=1)


def build_labels(manifest: Manifest, partitions: Sequence[Partition]) -> Labels:
    """Targets of every photo of the manifest."""
    return Labels(
        partition_names=tuple(p.name for p in partitions),
        classes=assign_classes(manifest.lat, manifest.lon, partitions),
        scenes=manifest.scenes.copy(),
    )
