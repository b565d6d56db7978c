"""Image decoding and preprocessing: the one path from bytes to a model input.

Training datasets and the TorchServe handler both decode through `decode_image`, so a photo looks
the same to the model in training and in service. Decoding is defensive, because the bytes come
from strangers: a size limit before decoding, Pillow's decompression-bomb limit turned into an
error, truncated files refused (not padded with grey), EXIF orientation applied, every mode made
RGB with transparency composited on white. Failures raise `ImageError` with a stable `code`.

torch and torchvision are imported inside the transform functions only.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from geoverdict_training.exceptions import ImageError

if TYPE_CHECKING:
    import torch

# Stable error codes (dead-letter reasons and metric labels depend on them).
EMPTY = "empty"
TOO_LARGE = "too_large"
TOO_MANY_PIXELS = "too_many_pixels"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
UNREADABLE = "unreadable"
ERROR_CODES = (EMPTY, TOO_LARGE, TOO_MANY_PIXELS, TRUNCATED, UNDECODABLE, UNREADABLE)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
SERVING_MAX_BYTES = 20 * 1024 * 1024  # the TorchServe handler's default limit per image
# Pillow's own bomb limit (about 89 Mpx) unless the process has changed or disabled it.
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
RGB = tuple[float, float, float]
IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)
_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


def _register_heif() -> None:
    """Let Pillow open HEIC/HEIF (phone photos) where pillow-heif is installed."""
    try:
        from pillow_heif import register_heif_opener  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return
    register_heif_opener()


_register_heif()


def decode_image(
    data: bytes,
    min_side: int | None = 256,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """An upright RGB image from encoded bytes; JPEGs are decoded at a reduced scale (1/2, 1/4,
    1/8) that keeps both sides >= `min_side`, which is several times faster for large photos."""
    if not data:
        raise ImageError(EMPTY, "no image bytes")
    if len(data) > max_bytes:
        raise ImageError(TOO_LARGE, f"{len(data)} bytes, limit {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(TOO_MANY_PIXELS, str(exc)) from exc
    except Exception as exc:  # Pillow raises many types on hostile bytes; all mean the same here
        raise ImageError(UNDECODABLE, f"not an image Pillow can open: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(TOO_MANY_PIXELS, f"{width}x{height} pixels, limit {max_pixels}")
    if width == 0 or height == 0:
        raise ImageError(UNDECODABLE, f"empty image {width}x{height}")
    try:
        if min_side is not None and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))
    except OSError as exc:
        message = str(exc)
        if "truncated" in message or "broken data stream" in message:
            raise ImageError(TRUNCATED, message) from exc
        raise ImageError(UNDECODABLE, message) from exc
    except Exception as exc:  # as above: a decoder failing in any way is an undecodable image
        raise ImageError(UNDECODABLE, f"{type(exc).__name__}: {exc}") from exc


def load_image(path: Path, min_side: int | None = 256) -> Image.Image:
    """`decode_image` of a file's bytes; a file that cannot be read is `unreadable`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(UNREADABLE, f"{path}: {exc.strerror or exc}") from exc
    return decode_image(data, min_side=min_side)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB of any Pillow mode: transparency composited on white, 16-bit scaled to 8-bit."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_rgb(image)
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", image.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Gray of 16-bit, 32-bit int or float modes as 8-bit RGB (Pillow's convert would clip)."""
    values = np.asarray(image, dtype=np.float64)
    peak = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")  # (H, W) uint8 is mode L


def train_transform(
    size: int = 224,
    scale: tuple[float, float] = (0.66, 1.0),
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
