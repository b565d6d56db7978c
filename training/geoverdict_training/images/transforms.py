"""From decoded pixels to model inputs: the input a model was trained for, and its transforms.

torch and torchvision are imported inside the transform functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import torch

RGB = tuple[float, float, float]
TRAIN_SCALE = (0.66, 1.0)  # random resized crops: share of the photo's area (the seed paper's)
IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """The input the model was trained for."""

    size: int  # crop side
    resize: int  # short side before the centre crop (evaluation)
    mean: RGB
    std: RGB


def train_transform(
    size: int = 224,
    scale: tuple[float, float] = TRAIN_SCALE,
    mean: RGB = IMAGENET_MEAN,
    std: RGB = IMAGENET_STD,
) -> Callable[[Image.Image], torch.Tensor]:
    """Training augmentation: random resized crop (the seed paper's scale range) and flip;
    `mean` / `std` are the backbone's normalisation (backbones.BackboneInfo)."""
    from torchvision import transforms  # noqa: PLC0415 (keep torch out of module import)

    return transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=scale),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def eval_transform(
    size: int = 224, resize: int = 256, mean: RGB = IMAGENET_MEAN, std: RGB = IMAGENET_STD
) -> Callable[[Image.Image], torch.Tensor]:
    """Evaluation and service: resize the short side to `resize`, centre crop `size`."""
    from torchvision import transforms  # noqa: PLC0415 (keep torch out of module import)

    return transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def five_crop_transform(
    size: int = 224, resize: int = 256, mean: RGB = IMAGENET_MEAN, std: RGB = IMAGENET_STD
) -> Callable[[Image.Image], torch.Tensor]:
    """Five-crop evaluation, as the GeoEstimation reference: resize the short side to `resize`,
    then the four corner crops and the centre crop of `size` -> (5, 3, size, size)."""
    import torch  # noqa: PLC0415 (keep torch out of module import)
    from torchvision import transforms  # noqa: PLC0415

    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    crop = transforms.Compose([transforms.Resize(resize), transforms.FiveCrop(size)])

    def transform(image: Image.Image) -> torch.Tensor:
        return torch.stack([to_tensor(c) for c in crop(image)])

    return transform
