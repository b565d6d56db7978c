"""Images decoded and preprocessed as tensors on a device: batched JPEG decoding (nvjpeg on a
GPU) for the TorchServe handler and for training.

Pillow decodes a photo on one CPU core in 2.6-2.8 ms, a GPU in 0.25 ms (issue 12, H200): with
Pillow a GPU box runs out of cores long before its GPU is busy. Here the JPEG bytes of a batch go
to `torchvision.io.decode_jpeg` in one call; the EXIF orientation, read from the header
(decode.read_header: Pillow parses headers without decoding pixels), is applied to the tensor;
resizing (antialiased), cropping and normalisation run on the device. Every limit of the Pillow
path holds, since both read the same checked header first. Whatever the device is not given or
cannot decode (PNG, HEIC, WebP, CMYK or 12-bit JPEG, any failure) is decoded by Pillow
(decode.decode_header), for that photo alone: one bad photo never costs the batch its device
decode, and every photo answers as it would on the Pillow path (tests/training/images/
test_device.py measures how closely on the development photos).

Any torch device works, `cpu` included: that is how the tests run this path.

Shapes: decoded images (3, H, W) uint8; crops (3, S, S) uint8 (device) or float32 normalised
(Pillow); model inputs (B, 3, S, S) float32 normalised.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as tvf

from geoverdict_training.exceptions import ImageError, TrainingError
from geoverdict_training.images.decode import (
    DEFAULT_LIMITS,
    ImageHeader,
    ImageLimits,
    decode_header,
    read_header,
)
from geoverdict_training.images.transforms import InputSpec

# What nvjpeg is given: baseline and progressive JPEGs of 8-bit YCbCr or grey (Pillow reads a
# 4-component JPEG as CMYK, and refuses 12-bit ones at open).
DEVICE_FORMATS = frozenset({"JPEG", "MPO"})
DEVICE_MODES = frozenset({"RGB", "L"})
# Decoded pixels per decode_jpeg call: 64 phone photos of 12 Mpx are 2.3 GB of uint8 on the
# device; 256 Mpx (768 MB) bounds it, whatever a batch holds.
DEVICE_BATCH_PIXELS = 256_000_000
_END_OF_IMAGE = b"\xff\xd9"


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One photo of a batch, decoded upright: by the device, or by Pillow."""

    header: ImageHeader
    pixels: torch.Tensor | None  # (3, H, W) uint8 on the device; None when Pillow decoded it
    pillow: Image.Image | None  # upright RGB when Pillow decoded it
    decode_ms: float  # this photo's share of its decode call

    @property
    def on_device(self) -> bool:
        """Whether the device decoded it."""
        return self.pixels is not None


def for_device(header: ImageHeader, data: bytes) -> bool:
    """Whether the device decoder is given this image (else Pillow decodes it). A JPEG must
    end with its end-of-image marker: what a device decoder does with a truncated stream
    (refuse it, or pad it with grey) is its own, and Pillow refuses it with a clear code."""
    return (
        header.format in DEVICE_FORMATS
        and header.image.mode in DEVICE_MODES
        and data.endswith(_END_OF_IMAGE)
    )


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """(3, H, W) as stored -> as displayed, for EXIF orientation 1-8 (Pillow's exif_transpose)."""
    if orientation in (2, 3):
        image = image.flip(-1)  # mirrored left-right (3: then upside down, below)
    if orientation in (3, 4):
        image = image.flip(-2)
    if orientation in (5, 6, 7, 8):
        image = image.transpose(-2, -1)  # (3, W, H)
        if orientation in (6, 7):
            image = image.flip(-1)
        if orientation in (7, 8):
            image = image.flip(-2)
    return image


def _chunks(items: Sequence[int], pixels: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive groups of `items` whose pixels stay within `budget` (a group holds at least
    one item)."""
    groups: list[list[int]] = []
    total = budget
    for item, count in zip(items, pixels, strict=True):
        if total + count > budget:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += count
    return groups


def _decode_on_device(data: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 per JPEG, None for one the device could not decode. One call for the
    list; when it fails (it returns nothing then), each photo alone finds the bad ones."""
    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]  # (n_bytes,)
    with warnings.catch_warnings():
        # torchvision 0.29 marks its decoders deprecated (for TorchCodec) at every call
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            pass
        decoded: list[torch.Tensor | None] = []
        for one in encoded:
            try:
                decoded.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
        return decoded


def decode_batch(
    bodies: Sequence[bytes],
    device: torch.device,
    limits: ImageLimits = DEFAULT_LIMITS,
    min_side: int | None = 256,
) -> list[DecodedImage | ImageError]:
    """Every photo of a batch, decoded upright, or the error that refuses it; `min_side` is
    the Pillow path's draft size (decode.decode_header)."""
    results: list[DecodedImage | ImageError | None] = [None] * len(bodies)
    headers: dict[int, ImageHeader] = {}
    for k, body in enumerate(bodies):
        try:
            headers[k] = read_header(body, limits)
        except ImageError as exc:
            results[k] = exc
    eligible = [k for k, header in headers.items() if for_device(header, bodies[k])]
    pixels = [headers[k].width * headers[k].height for k in eligible]
    for group in _chunks(eligible, pixels, DEVICE_BATCH_PIXELS):
        started = time.perf_counter()
        decoded = _decode_on_device([bodies[k] for k in group], device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the decode's time, not the launch's
        share = (time.perf_counter() - started) * 1000.0 / len(group)
        for k, image in zip(group, decoded, strict=True):
            if image is not None:
                upright = orient(image, headers[k].orientation)
                results[k] = DecodedImage(headers[k], upright, None, share)
    for k, header in headers.items():
        if results[k] is None:  # not for the device, or the device failed on it
            started = time.perf_counter()
            try:
                pillow = decode_header(header, min_side)
            except ImageError as exc:
                results[k] = exc
                continue
            results[k] = DecodedImage(header, None, pillow, (time.perf_counter() - started) * 1e3)
    return [r for r in results if r is not None]


def centre_crop(image: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, S, S) uint8: the short side resized to `spec.resize`
    (antialiased, as Pillow), then the centre crop, as images.eval_transform."""
    resized = tvf.resize(image, [spec.resize], antialias=True)
    return tvf.center_crop(resized, [spec.size, spec.size])


def random_crop(
    image: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, S, S) uint8: a random resized crop and a random horizontal flip,
    as images.train_transform (torch's global generator, seeded per run)."""
    top, left, height, width = RandomResizedCrop.get_params(image, list(scale), list(ratio))
    crop = tvf.resized_crop(image, top, left, height, width, [size, size], antialias=True)
    return crop.flip(-1) if torch.rand(1).item() < 0.5 else crop


def model_input(
    crops: Sequence[torch.Tensor], spec: InputSpec, device: torch.device
) -> torch.Tensor:
    """(B, 3, S, S) float32 normalised on `device`: uint8 crops (the device path) normalised in
    one operation, float crops (the Pillow path's transform, already normalised) as they are."""
    out = torch.empty(len(crops), 3, spec.size, spec.size, device=device)
    raw = [k for k, crop in enumerate(crops) if crop.dtype == torch.uint8]
    done = [k for k, crop in enumerate(crops) if crop.dtype != torch.uint8]
    if raw:
        mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255.0
        batch = torch.stack([crops[k] for k in raw]).to(device)  # (b, 3, S, S) uint8
        out[raw] = (batch.float() - mean) / std
    if done:
        out[done] = torch.stack([crops[k] for k in done]).to(device, torch.float32)
    return out


def crop_all(
    images: Sequence[DecodedImage],
    device_crop: Callable[[torch.Tensor], torch.Tensor],
    pillow_transform: Callable[[Image.Image], torch.Tensor],
) -> list[torch.Tensor]:
    """Each photo's crop: `device_crop` on device-decoded pixels, the Pillow path's transform
    on the others."""
    crops = []
    for image in images:
        if image.pixels is not None:
            crops.append(device_crop(image.pixels))
        elif image.pillow is not None:
            crops.append(pillow_transform(image.pillow))
        else:  # decode_batch never makes one: a bug
            raise TrainingError("a decoded image holds no pixels")
    return crops
