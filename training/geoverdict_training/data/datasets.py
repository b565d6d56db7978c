"""torch datasets of labelled photos: a manifest over an image folder, or streamed msgpack shards.

Both yield `(image, labels)` with `image` a (3, H, W) float tensor from the given transform
((5, 3, H, W) with images.five_crop_transform), or without a transform the photo's encoded bytes
(the loader's workers then only read files; device_batches.py decodes on the GPU), and
`labels` a dict of tensors keyed by the model's head names: one int64 scalar per partition
(e.g. "cells_50_5000", -1 where the photo has no class) and per scene head ("scene_s3",
"scene_s16", "scene_s365", -1 where absent), "coords", (2,) float32 latitude and longitude, and
"row", the photo's int64 row in the manifest (so predictions map back to photos past skips).
A photo that cannot be decoded yields `Skipped(reason, image_id)` instead; `collate` drops those
and counts them in the batch, so a training loop can report them in one summary line
(`collate_encoded` likewise for bytes).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from geoverdict_training.data import shards
from geoverdict_training.data.labels import Labels
from geoverdict_training.data.manifest import Manifest
from geoverdict_training.exceptions import ConfigError, DataFileError, ImageError
from geoverdict_training.images.decode import decode_image, load_image, read_file

log = logging.getLogger(__name__)

COORDS = "coords"
ROW = "row"
Transform = Callable[[Image.Image], torch.Tensor]
Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]
EncodedSample = tuple[bytes, dict[str, torch.Tensor]]


class Skipped(NamedTuple):
    """A photo left out of a batch, and why."""

    reason: str
    image_id: str


class Batch(NamedTuple):
    """Collated samples; `skipped` counts the photos of this batch that were left out, by reason."""

    images: torch.Tensor  # (B, 3, H, W); (0,) when every photo was skipped
    labels: dict[str, torch.Tensor]  # each (B, ...)
    skipped: dict[str, int]

    @property
    def size(self) -> int:
        """Photos in the batch (a tuple's len() would count its three fields)."""
        return int(self.images.shape[0])


class EncodedBatch(NamedTuple):
    """Collated photos still encoded, as loader workers that only read files hand them over."""

    data: list[bytes]
    labels: dict[str, torch.Tensor]  # each (B, ...)
    skipped: dict[str, int]

    @property
    def size(self) -> int:
        """Photos in the batch."""
        return len(self.data)


class _Targets:
    """Labels of a manifest's rows as tensors."""

    def __init__(self, manifest: Manifest, labels: Labels) -> None:
        if len(labels) != len(manifest):
            raise ConfigError(f"{len(labels)} labels for a manifest of {len(manifest)} photos")
        self.columns = {
            head: torch.from_numpy(np.ascontiguousarray(column, dtype=np.int64))  # (N,)
            for head, column in labels.columns().items()
        }
        coords = np.stack([manifest.lat, manifest.lon], axis=1).astype(np.float32)
        self.columns[COORDS] = torch.from_numpy(coords)  # (N, 2)
        self.columns[ROW] = torch.arange(len(manifest), dtype=torch.int64)  # (N,)

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        return {head: column[row] for head, column in self.columns.items()}


class ImageFolderDataset(Dataset[Sample | EncodedSample | Skipped]):
    """Photos of a manifest read from an image folder (rows without a file already dropped);
    without a transform, their bytes."""

    def __init__(
        self,
        manifest: Manifest,
        labels: Labels,
        image_dir: Path,
        transform: Transform | None,
        *,
        min_side: int = 256,
    ) -> None:
        self.manifest = manifest
        self.targets = _Targets(manifest, labels)
        self.image_dir = image_dir
        self.transform = transform
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> Sample | EncodedSample | Skipped:
        image_id = self.manifest.image_ids[index]
        path = self.image_dir / image_id
        try:
            if self.transform is None:
                return read_file(path), self.targets[index]
            image = load_image(path, min_side=self.min_side)
        except ImageError as exc:
            log.debug("skipping %s: %s", image_id, exc)
            return Skipped(f"image {exc.code}", image_id)
        return self.transform(image), self.targets[index]


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardDataset(IterableDataset[Sample | EncodedSample | Skipped]):
    """Streams MP-16-style shards with a shuffle buffer; labels come from the manifest by id.

    Shards are split between distributed ranks and then between a loader's workers, so each
    record is read once per epoch. Every reader shuffles the shard order with the same seed (so
    the split is a partition of the shards) and records through a buffer of `buffer_size`.
    Records whose id is not in the manifest are passed over, as in the reference.
    """

    def __init__(
        self,
        shard_paths: Sequence[Path],
        manifest: Manifest,
        labels: Labels,
        transform: Transform | None,
        *,
        shuffle: bool = True,
        buffer_size: int = 4096,
        seed: int = 0,
        min_side: int = 256,
    ) -> None:
        super().__init__()
        if not shard_paths:
            raise ConfigError("a shard dataset needs at least one shard")
        if buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {buffer_size}")
        self.shard_paths = list(shard_paths)
        self.rows = {image_id: k for k, image_id in enumerate(manifest.image_ids)}
        self.targets = _Targets(manifest, labels)
        self.transform = transform
        self.shuffle = shuffle
        self.buffer_size = buffer_size
        self.seed = seed
        self.min_side = min_side
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently in the next pass (call before each epoch, in the main process)."""
        self.epoch = epoch

    def _reader(self) -> tuple[int, int]:
        """(this reader's index, number of readers) over distributed ranks times workers."""
        rank, world = _rank_and_world()
        worker = get_worker_info()
        workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        return rank * workers + worker_id, world * workers

    def my_shards(self) -> list[Path]:
        """The shards this rank's worker reads this epoch."""
        order = list(range(len(self.shard_paths)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)  # same order in every reader
        reader, readers = self._reader()
        return [self.shard_paths[k] for k in order[reader::readers]]

    def _records(self, paths: list[Path]) -> Iterator[shards.Record | Skipped]:
        for path in paths:
            try:
                for record in shards.read_records(path):
                    if record is None:
                        yield Skipped("malformed record", "")
                    elif record.image_id in self.rows:
                        yield record
            except DataFileError as exc:  # a damaged shard ends early; the epoch goes on
                log.warning("%s", exc)
                yield Skipped("damaged shard", str(path))

    def _shuffled(self, paths: list[Path]) -> Iterator[shards.Record | Skipped]:
        records = self._records(paths)
        if not self.shuffle:
            yield from records
            return
        reader, readers = self._reader()
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * readers + reader)
        buffer: list[shards.Record | Skipped] = []
        for record in records:
            if len(buffer) < self.buffer_size:
                buffer.append(record)
                continue
            k = rng.randrange(len(buffer))
            yield buffer[k]
            buffer[k] = record
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[Sample | EncodedSample | Skipped]:
        paths = self.my_shards()
        for item in self._shuffled(paths):
            if isinstance(item, Skipped):
                yield item
                continue
            if self.transform is None:
                yield item.image, self.targets[self.rows[item.image_id]]
                continue
            try:
                image = decode_image(item.image, min_side=self.min_side)
            except ImageError as exc:
                log.debug("skipping %s: %s", item.image_id, exc)
                yield Skipped(f"image {exc.code}", item.image_id)
                continue
            yield self.transform(image), self.targets[self.rows[item.image_id]]


def _stack_labels(targets: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([target[key] for target in targets]) for key in targets[0]}


def collate(items: Sequence[Sample | Skipped]) -> Batch:
    """Stack the samples of a batch, leaving out and counting the skipped photos."""
    samples = [item for item in items if not isinstance(item, Skipped)]
    skipped = Counter(item.reason for item in items if isinstance(item, Skipped))
    if not samples:
        return Batch(torch.empty(0), {}, dict(skipped))
    images = torch.stack([image for image, _ in samples])
    return Batch(images, _stack_labels([target for _, target in samples]), dict(skipped))


def collate_encoded(items: Sequence[EncodedSample | Skipped]) -> EncodedBatch:
    """The bytes and stacked labels of a batch, leaving out and counting the skipped photos."""
    samples = [item for item in items if not isinstance(item, Skipped)]
    skipped = Counter(item.reason for item in items if isinstance(item, Skipped))
    if not samples:
        return EncodedBatch([], {}, dict(skipped))
    labels = _stack_labels([target for _, target in samples])
    return EncodedBatch([data for data, _ in samples], labels, dict(skipped))
