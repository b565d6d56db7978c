"""Transforms: normalised crops of the size the model was trained for, the same crop each time
in evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from geoverdict_training.images import transforms
from geoverdict_training.images.transforms import eval_transform, train_transform


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_train_and_eval_transforms_give_normalised_224_crops() -> None:
    image = Image.new("RGB", (320, 240), (255, 255, 255))
    for transform in (train_transform(), eval_transform()):
        tensor = transform(image)
        assert tensor.shape == (3, 224, 224)
        assert tensor.dtype == torch.float32
        expected = [
            (1 - m) / s
            for m, s in zip(transforms.IMAGENET_MEAN, transforms.IMAGENET_STD, strict=True)
        ]
        assert tensor.mean(dim=(1, 2)).tolist() == pytest.approx(expected, abs=1e-5)


def test_eval_transform_is_deterministic_and_centred() -> None:
    image = _noise((300, 256))
    transform = eval_transform()
    assert torch.equal(transform(image), transform(image))
