"""What a run trains on: the split by photographer, the partitions built from the TRAINING photos'
coordinates (validation photos must not shape the classes), the hierarchy, labels and datasets,
and the trivial baselines of those photos (evaluation/baselines.py), kept for every evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset, IterableDataset

from geoverdict_training.data.datasets import (
    EncodedSample,
    ImageFolderDataset,
    Sample,
    ShardDataset,
    Skipped,
)
from geoverdict_training.data.labels import Labels, build_labels
from geoverdict_training.data.manifest import Manifest, read_manifest
from geoverdict_training.data.shards import list_shards
from geoverdict_training.data.splits import split_by_author
from geoverdict_training.evaluation.baselines import constant_points
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo.hierarchy import Hierarchy, build_hierarchy
from geoverdict_training.geo.partitions import Partition, build_partitions
from geoverdict_training.images.transforms import InputSpec, eval_transform, train_transform
from geoverdict_training.models.backbones import backbone_info
from geoverdict_training.train.config import TrainConfig

Photos = Dataset[Sample | Skipped] | Dataset[Sample | EncodedSample | Skipped]


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The photos of a run, split, with their classes."""

    train: Manifest
    val: Manifest
    partitions: tuple[Partition, ...]  # coarse -> fine; empty for a scene-only model
    hierarchy: Hierarchy | None
    train_labels: Labels
    val_labels: Labels
    baselines: dict[str, Any] = field(default_factory=dict)  # constant_points; {} scene-only


def _read(path: str, images: str, limit: int = 0) -> Manifest:
    manifest = read_manifest(Path(path))
    if limit:
        manifest = manifest.subset(np.arange(min(limit, len(manifest)), dtype=np.int64))
    if images:
        manifest = manifest.with_existing_files(Path(images))
    return manifest


def split_manifests(config: TrainConfig) -> tuple[Manifest, Manifest]:
    """(train, val) photos: a given validation manifest, or the manifest split by author."""
    images = "" if config.shards else config.images
    manifest = _read(config.manifest, images, config.limit)
    if config.val_manifest:
        return manifest, _read(config.val_manifest, config.val_images or images)
    return split_by_author(manifest, config.val_fraction, config.split_seed)


def prepare(config: TrainConfig, partitions: Sequence[Partition] | None = None) -> TrainingData:
    """Split, then partition the training photos (unless `partitions` come from a checkpoint)."""
    train, val = split_manifests(config)
    if len(train) == 0:
        raise ConfigError(f"no training photos in {config.manifest} (are the images there?)")
    specs = config.partition_specs()
    if partitions is None:
        partitions = build_partitions(train.lat, train.lon, specs) if specs else []
    for partition in partitions:
        if len(partition) == 0:
            raise ConfigError(
                f"config key 'partitions': {partition.name} has no cell for {len(train)} "
                "training photos; lower tau_min"
            )
    hierarchy = build_hierarchy(partitions) if partitions else None
    return TrainingData(
        train=train,
        val=val,
        partitions=tuple(partitions),
        hierarchy=hierarchy,
        train_labels=build_labels(train, partitions),
        val_labels=build_labels(val, partitions),
        baselines=constant_points(train.lat, train.lon) if partitions else {},
    )


def input_spec(config: TrainConfig) -> InputSpec:
    """The model input of a run: crop, resize and the backbone's normalisation."""
    info = backbone_info(config.backbone)
    return InputSpec(config.input_size, config.resize, info.mean, info.std)


def train_dataset(config: TrainConfig, data: TrainingData, encoded: bool = False) -> Photos:
    """Augmented training photos, from the image folder or streamed from shards; `encoded`:
    their bytes, for a device to decode and augment (device_batches.py)."""
    spec = input_spec(config)
    transform = None if encoded else train_transform(spec.size, mean=spec.mean, std=spec.std)
    if config.shards:
        return ShardDataset(
            list_shards(Path(config.shards)),
            data.train,
            data.train_labels,
            transform,
            seed=config.seed,
            min_side=config.resize,
        )
    return ImageFolderDataset(
        data.train, data.train_labels, Path(config.images), transform, min_side=config.resize
    )


def eval_dataset(
    config: TrainConfig, manifest: Manifest, labels: Labels, images: str | None = None
) -> Photos:
    """Photos for validation or evaluation: resize and centre crop, no augmentation."""
    spec = input_spec(config)
    transform = eval_transform(spec.size, spec.resize, mean=spec.mean, std=spec.std)
    folder = images or config.val_images or config.images
    if config.shards and not (images or config.val_images):
        return ShardDataset(
            list_shards(Path(config.shards)),
            manifest,
            labels,
            transform,
            shuffle=False,
            min_side=config.resize,
        )
    return ImageFolderDataset(manifest, labels, Path(folder), transform, min_side=config.resize)


def is_streamed(dataset: Photos) -> bool:
    """Whether the dataset is iterable-style (its own sharding, no sampler)."""
    return isinstance(dataset, IterableDataset)
