"""torch datasets over an image folder and over streamed shards, with skipped photos counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from geoverdict_training.data import datasets
from geoverdict_training.data.datasets import (
    Batch,
    ImageFolderDataset,
    ShardDataset,
    Skipped,
    collate,
)
from geoverdict_training.data.labels import Labels
from geoverdict_training.data.manifest import Manifest
from geoverdict_training.data.shards import list_shards, write_shards
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.images.transforms import eval_transform
from tests.training.imagefiles import write_photos

TRANSFORM = eval_transform(size=8, resize=8)


def _data(n: int) -> tuple[Manifest, Labels]:
    """n photos whose latitude is their index, so samples can be told apart."""
    names = [f"p{k:02d}.jpg" for k in range(n)]
    scenes = np.tile(np.array([[1, 2, 3]]), (n, 1))
    manifest = Manifest(names, np.arange(n, dtype=np.float64), np.zeros(n), scenes)
    classes = np.stack([np.arange(n) % 3, np.where(np.arange(n) % 2 == 0, np.arange(n), -1)], 1)
    return manifest, Labels(("cells_a", "cells_b"), classes, scenes)


def _ids(batches: list[Batch]) -> list[int]:
    return [int(lat) for batch in batches for lat in batch.labels["coords"][:, 0]]


def test_folder_dataset_yields_images_and_labels_named_as_the_model_heads(tmp_path: Path) -> None:
    manifest, labels = _data(3)
    write_photos(tmp_path, manifest.image_ids)
    dataset = ImageFolderDataset(manifest, labels, tmp_path, TRANSFORM)
    image, targets = dataset[2]  # type: ignore[misc]
    assert image.shape == (3, 8, 8)
    assert set(targets) == {
        "cells_a",
        "cells_b",
        "scene_s3",
        "scene_s16",
        "scene_s365",
        "coords",
        "row",
    }
    assert targets["cells_a"].item() == 2
    assert targets["cells_b"].item() == 2
    assert targets["scene_s365"].item() == 3
    assert targets["coords"].tolist() == [2.0, 0.0]
    assert dataset[1][1]["cells_b"].item() == -1  # type: ignore[index]


def test_undecodable_photos_are_left_out_of_batches_and_counted(tmp_path: Path) -> None:
    manifest, labels = _data(5)
    write_photos(tmp_path, manifest.image_ids)
    (tmp_path / "p01.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "p03.jpg").unlink()
    dataset = ImageFolderDataset(manifest, labels, tmp_path, TRANSFORM)
    assert dataset[1] == Skipped("image undecodable", "p01.jpg")
    batches = list(DataLoader(dataset, batch_size=5, collate_fn=collate))
    assert len(batches) == 1
    assert batches[0].size == 3
    assert batches[0].images.shape == (3, 3, 8, 8)
    assert batches[0].labels["cells_a"].tolist() == [0, 2, 1]
    assert batches[0].skipped == {"image undecodable": 1, "image unreadable": 1}


def test_a_batch_of_only_skipped_photos_is_empty() -> None:
    batch = collate([Skipped("image truncated", "a")])
    assert batch.size == 0
    assert batch.skipped == {"image truncated": 1}


def test_labels_must_match_the_manifest(tmp_path: Path) -> None:
    _, labels = _data(3)
    other, _ = _data(4)
    with pytest.raises(ConfigError, match="3 labels for a manifest of 4"):
        ImageFolderDataset(other, labels, tmp_path, TRANSFORM)


@pytest.fixture
def shard_data(tmp_path: Path) -> tuple[list[Path], Manifest, Labels]:
    manifest, labels = _data(12)
    write_photos(tmp_path / "images", manifest.image_ids)
    write_shards(manifest, tmp_path / "images", tmp_path / "shards", shard_size=3)
    return list_shards(tmp_path / "shards"), manifest, labels


def test_shards_are_read_once_per_epoch_across_workers(shard_data: tuple) -> None:
    paths, manifest, labels = shard_data
    dataset = ShardDataset(paths, manifest, labels, TRANSFORM, buffer_size=4, seed=1)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate)
    first = _ids(list(loader))
    dataset.set_epoch(1)
    second = _ids(list(loader))
    assert sorted(first) == list(range(12))
    assert sorted(second) == list(range(12))
    assert first != second


def test_shuffling_is_reproducible_and_can_be_turned_off(shard_data: tuple) -> None:
    paths, manifest, labels = shard_data

    def order(**options: object) -> list[int]:
        dataset = ShardDataset(paths, manifest, labels, TRANSFORM, **options)  # type: ignore[arg-type]
        return _ids(list(DataLoader(dataset, batch_size=4, collate_fn=collate)))

    assert order(seed=3, buffer_size=5) == order(seed=3, buffer_size=5)
    assert order(seed=3, buffer_size=5) != list(range(12))
    assert order(shuffle=False) == list(range(12))


def test_records_missing_from_the_manifest_are_passed_over(shard_data: tuple) -> None:
    paths, manifest, labels = shard_data
    rows = np.arange(0, 12, 2)
    part = manifest.subset(rows)
    part_labels = Labels(labels.partition_names, labels.classes[rows], labels.scenes[rows])
    dataset = ShardDataset(paths, part, part_labels, TRANSFORM, shuffle=False)
    assert _ids(list(DataLoader(dataset, batch_size=4, collate_fn=collate))) == list(rows)


def test_shards_are_split_between_distributed_ranks(
    shard_data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, manifest, labels = shard_data
    dataset = ShardDataset(paths, manifest, labels, TRANSFORM, seed=2)
    mine = []
    for rank in (0, 1):
        monkeypatch.setattr(datasets, "_rank_and_world", lambda rank=rank: (rank, 2))
        mine.append(set(dataset.my_shards()))
    assert mine[0] and mine[1]
    assert not mine[0] & mine[1]
    assert mine[0] | mine[1] == set(paths)


def test_a_damaged_shard_is_counted_and_the_epoch_goes_on(shard_data: tuple) -> None:
    paths, manifest, labels = shard_data
    paths[0].write_bytes(paths[0].read_bytes()[:50] + b"\xc1")
    dataset = ShardDataset(paths, manifest, labels, TRANSFORM, shuffle=False)
    batches = list(DataLoader(dataset, batch_size=12, collate_fn=collate))
    assert _ids(batches) == list(range(3, 12))
    assert sum(b.skipped.get("damaged shard", 0) for b in batches) == 1
    assert all(isinstance(b.images, torch.Tensor) for b in batches)
