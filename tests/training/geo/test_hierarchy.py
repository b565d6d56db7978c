"""The hierarchy maps each fine class to the classes whose cells contain it, coarse to fine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import s2sphere

from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo import s2
from geoverdict_training.geo.hierarchy import build_hierarchy
from geoverdict_training.geo.partition_files import read_cells_csv
from geoverdict_training.geo.partitions import Partition, PartitionSpec, build_partitions


def _partition(name: str, cells: np.ndarray) -> Partition:
    n = cells.shape[0]
    return Partition(name, cells, np.ones(n, np.int64), np.zeros(n), np.zeros(n), n)


def test_fine_classes_get_the_classes_that_contain_them() -> None:
    leaves = s2.leaf_cell_ids([10.0, 10.001, -40.0, 60.0], [20.0, 20.001, 100.0, -3.0])
    coarse = _partition("coarse", s2.parent_ids(leaves[[2, 0]], 4))  # nothing around leaf 3
    middle = _partition("middle", s2.parent_ids(leaves[[0, 2, 3]], 8))
    fine = _partition("fine", s2.parent_ids(leaves, 20))
    hierarchy = build_hierarchy([coarse, middle, fine])
    assert hierarchy.ancestors.dtype == np.int64
    assert hierarchy.ancestors.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 2], [-1, 2, 3]]
    assert hierarchy.complete.tolist() == [True, True, True, False]
    assert hierarchy.n_fine == 4


def test_partitions_of_the_same_photos_nest_completely() -> None:
    rng = np.random.default_rng(5)
    lat = np.clip(rng.normal(30, 10, 3000), -90, 90)
    lon = rng.normal(0, 30, 3000)
    specs = [PartitionSpec(5, 400), PartitionSpec(5, 100), PartitionSpec(5, 30)]
    hierarchy = build_hierarchy(build_partitions(lat, lon, specs))
    assert hierarchy.complete.all()
    assert hierarchy.ancestors[:, -1].tolist() == list(range(hierarchy.n_fine))


def test_a_single_partition_is_its_own_hierarchy() -> None:
    fine = _partition("fine", s2.parent_ids(s2.leaf_cell_ids([1.0], [2.0]), 9))
    assert build_hierarchy([fine]).ancestors.tolist() == [[0]]


def test_no_partitions_is_refused() -> None:
    with pytest.raises(ConfigError):
        build_hierarchy([])


@pytest.fixture(scope="module")
def public_partitions(shared_data: Path) -> list[Partition]:
    folder = shared_data / "geoestimation"
    return [read_cells_csv(folder / f"cells_50_{m}.csv") for m in (5000, 2000, 1000)]


def test_public_hierarchy_agrees_with_s2sphere(public_partitions: list[Partition]) -> None:
    hierarchy = build_hierarchy(public_partitions)
    assert hierarchy.ancestors.shape == (12893, 3)
    tokens = [{t: k for k, t in enumerate(p.tokens)} for p in public_partitions]
    # Every fine class's containing cell exists in the coarser partitions, and is the one
    # s2sphere finds among the fine cell's parents.
    for f in range(hierarchy.n_fine):
        cell = s2sphere.CellId.from_token(public_partitions[2].tokens[f])
        parents = [cell.parent(level).to_token() for level in range(2, cell.level() + 1)]
        for j in (0, 1):
            found = [tokens[j][t] for t in parents if t in tokens[j]]
            assert found == [hierarchy.ancestors[f, j]], (f, j)
    assert hierarchy.complete.all()


@pytest.mark.parametrize(
    ("fine", "coarse", "middle", "tokens"),
    [
        # Paris, a level-30 cell of 1645 photos at one position
        (1019, 62, 970, ("47e66e21", "47e66e209", "47e66e20858771d3")),
        # London, Trafalgar Square
        (4595, 943, 2788, ("487604cf", "487604cfc", "487604cfba8aa333")),
        (0, 0, 0, ("8744", "8747", "8747c")),  # Moab, Utah
        (12892, 709, 799, ("8807c", "8807b", "8807bc")),  # near Madison, Wisconsin
    ],
)
def test_hand_checked_public_cells(
    public_partitions: list[Partition], fine: int, coarse: int, middle: int, tokens: tuple
) -> None:
    hierarchy = build_hierarchy(public_partitions)
    assert hierarchy.ancestors[fine].tolist() == [coarse, middle, fine]
    got = tuple(p.tokens[k] for p, k in zip(public_partitions, (coarse, middle, fine), strict=True))
    assert got == tokens
