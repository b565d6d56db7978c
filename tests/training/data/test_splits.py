"""Splitting by photographer: whole authors held out, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.data.splits import split_by_author
from geoverdict_training.exceptions import ConfigError


def _manifest(authors: list[str] | None, n: int = 200) -> Manifest:
    rng = np.random.default_rng(1)
    return Manifest(
        image_ids=[f"p{k}.jpg" for k in range(n)],
        lat=rng.uniform(-60, 60, n),
        lon=rng.uniform(-180, 180, n),
        scenes=np.full((n, 3), -1, np.int64),
        authors=authors,
    )


def test_whole_photographers_are_held_out_near_the_fraction() -> None:
    authors = [f"a{k % 23}" for k in range(200)]
    split = split_by_author(_manifest(authors), 0.15, seed=0)
    assert split.train.authors is not None and split.val.authors is not None
    assert not set(split.train.authors) & set(split.val.authors)
    assert len(split.train) + len(split.val) == 200
    assert 30 <= len(split.val) <= 30 + 9  # stops at the first author past 15 %


def test_the_split_is_reproducible_and_depends_on_the_seed() -> None:
    manifest = _manifest([f"a{k % 23}" for k in range(200)])
    first = split_by_author(manifest, 0.2, seed=3).val.image_ids
    assert split_by_author(manifest, 0.2, seed=3).val.image_ids == first
    assert split_by_author(manifest, 0.2, seed=4).val.image_ids != first


def test_without_authors_a_validation_split_is_refused() -> None:
    with pytest.raises(ConfigError, match="AUTHOR"):
        split_by_author(_manifest(None), 0.1)
    assert len(split_by_author(_manifest(None), 0.0).train) == 200


def test_holding_out_every_photographer_is_refused() -> None:
    with pytest.raises(ConfigError, match="every photographer"):
        split_by_author(_manifest(["only"] * 200), 0.5)
