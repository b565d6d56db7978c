"""The class hierarchy across partitions: each fine class's ancestor class in every partition.

Prediction multiplies probabilities across partitions, p(f) = prod_j p_j(ancestor_j(f)), so it
needs, for every class f of the finest partition, the class of partition j whose cell contains
f's cell. GeoEstimation looks the ancestors up from the class's mean coordinate, which can fall
outside the cell; we use the cells themselves (S2 containment), so a class's ancestor is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo.partitions import Partition


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """Ancestors of the finest partition's classes; partitions ordered coarse to fine."""

    partitions: tuple[Partition, ...]
    # (n_fine, n_partitions): column j is the ancestor's class in partition j, -1 where no cell
    # of partition j contains the fine cell; the last column is the fine class itself.
    ancestors: npt.NDArray[np.int64]

    @property
    def n_fine(self) -> int:
        """Classes of the finest partition."""
        return int(self.ancestors.shape[0])

    @property
    def complete(self) -> npt.NDArray[np.bool_]:
        """(n_fine,) whether a fine class has an ancestor in every partition."""
        return np.all(self.ancestors >= 0, axis=1)


def build_hierarchy(partitions: Sequence[Partition]) -> Hierarchy:
    """The hierarchy of partitions given coarse to fine (the last one is the finest)."""
    if not partitions:
        raise ConfigError("a hierarchy needs at least one partition")
    finest = partitions[-1].cell_ids  # (n_fine,)
    columns = [p.classes_containing(finest) for p in partitions[:-1]]
    columns.append(np.arange(finest.shape[0], dtype=np.int64))
    return Hierarchy(partitions=tuple(partitions), ancestors=np.stack(columns, axis=1))
