"""Training batches decoded and augmented on the training device (config `decode: device`).

The loader's workers only read bytes (files or shard records) and collate them
(datasets.collate_encoded); here the batch's JPEGs are decoded on the GPU in one call and each
gets its random resized crop and flip there (device_images.py), the others Pillow and the CPU
transform of `decode: pillow`. A photo that cannot be decoded is left out of the batch and
counted, as in the loader path, so the run's summary of skipped photos reads the same.
"""

from __future__ import annotations

import functools
from collections import Counter

import torch

from geoverdict_training.data.datasets import Batch, EncodedBatch
from geoverdict_training.exceptions import ImageError
from geoverdict_training.images.device import (
    DecodedImage,
    crop_all,
    decode_batch,
    model_input,
    random_crop,
)
from geoverdict_training.images.transforms import TRAIN_SCALE, InputSpec, train_transform


class DeviceBatches:
    """Encoded batches -> augmented (B, 3, S, S) batches on `device`."""

    def __init__(
        self,
        device: torch.device,
        spec: InputSpec,
        scale: tuple[float, float] = TRAIN_SCALE,
    ) -> None:
        self.device = device
        self.spec = spec
        self.crop = functools.partial(random_crop, size=spec.size, scale=scale)
        self.pillow_transform = train_transform(spec.size, scale, spec.mean, spec.std)

    def __call__(self, batch: EncodedBatch) -> Batch:
        """The batch decoded, cropped and normalised; undecodable photos left out, counted."""
        # Pillow decodes its photos no smaller than the eval resize, as the loader path does.
        decoded = decode_batch(batch.data, self.device, min_side=self.spec.resize)
        keep = [k for k, item in enumerate(decoded) if isinstance(item, DecodedImage)]
        skipped = Counter(batch.skipped)
        skipped.update(f"image {item.code}" for item in decoded if isinstance(item, ImageError))
        if not keep:
            return Batch(torch.empty(0), {}, dict(skipped))
        good = [item for item in decoded if isinstance(item, DecodedImage)]
        crops = crop_all(good, self.crop, self.pillow_transform)  # each (3, S, S)
        images = model_input(crops, self.spec, self.device)  # (B, 3, S, S)
        index = torch.tensor(keep)
        labels = {key: value[index] for key, value in batch.labels.items()}
        return Batch(images, labels, dict(skipped))
