"""Image decoding: the one path from bytes to upright RGB pixels.

Training datasets and the model handler both decode through `decode_image`, so a photo looks
the same to the model in training and in service. Decoding is defensive, because the bytes come
from strangers. Before any pixel is decoded, `read_header` checks what the header says against
`ImageLimits`: the size in bytes, an allow-list of formats (Pillow opens nothing else), the pixel
count (Pillow's decompression-bomb limit is an error too) and the aspect ratio. The aspect ratio
matters because evaluation resizes the SHORT side: a 327-byte 20000x4 PNG would otherwise be
scaled up to 1,100,000x220 pixels (2 s and 1 GB in a worker; 200000x4 needs 20 GB). Then:
truncated files refused (not padded with grey), EXIF orientation applied, every mode made RGB
with transparency composited on white. Failures raise `ImageError` with a stable `code`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from geoverdict_common.serving import SERVING_MAX_BYTES
from geoverdict_training.exceptions import ImageError

# Stable error codes (dead-letter reasons and metric labels depend on them).
EMPTY = "empty"
TOO_LARGE = "too_large"
TOO_MANY_PIXELS = "too_many_pixels"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
UNREADABLE = "unreadable"
UNSUPPORTED = "unsupported"  # an image format Pillow knows but the allow-list leaves out
ERROR_CODES = (EMPTY, TOO_LARGE, TOO_MANY_PIXELS, TRUNCATED, UNDECODABLE, UNREADABLE, UNSUPPORTED)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
# 50 Mpx admits a 48-megapixel phone photo (8064x6048), the largest common camera output, and
# is below Pillow's own bomb limit (89 Mpx): a PNG or WebP decodes at full size, 4 bytes a pixel.
DEFAULT_MAX_PIXELS = 50_000_000
# Long side over short side. Stitched panoramas reach about 8:1; 16:1 bounds what a short-side
# resize can make of an image to 16 x resize^2 pixels (1 Mpx at 256).
DEFAULT_MAX_ASPECT = 16.0
# What photos are posted as: the handler opens nothing else (TIFF, PSD, EPS, ICO and Pillow's
# other decoders stay closed to strangers' bytes). Training data, the operator's own photos,
# may also be TIFF (data/photo_folders.py lists .tif files).
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "HEIF", "AVIF")
DATA_FORMATS = (*ALLOWED_FORMATS, "TIFF")
_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_ORIENTATION = 0x0112
SWAPS_SIDES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image by 90 degrees


def _register_heif() -> None:
    """Let Pillow open HEIC/HEIF (phone photos) where pillow-heif is installed."""
    try:
        from pillow_heif import register_heif_opener  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return
    register_heif_opener()


_register_heif()


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be before any of its pixels is decoded."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect: float = DEFAULT_MAX_ASPECT
    formats: tuple[str, ...] = ALLOWED_FORMATS


DEFAULT_LIMITS = ImageLimits(formats=DATA_FORMATS)  # training data and tools
SERVING_LIMITS = ImageLimits(max_bytes=SERVING_MAX_BYTES)  # the handler (settings may change it)


@dataclass(frozen=True, eq=False)
class ImageHeader:
    """An image opened but not decoded, its header checked against the limits."""

    image: Image.Image  # lazily opened by Pillow: no pixel decoded yet
    format: str  # Pillow's name: JPEG, MPO (a phone's JPEG), PNG, ...
    width: int  # as stored (before EXIF orientation)
    height: int
    orientation: int  # EXIF orientation, 1 (upright) to 8
    exif: Image.Exif

    @property
    def displayed_size(self) -> tuple[int, int]:
        """(width, height) as displayed, EXIF orientation applied."""
        if self.orientation in SWAPS_SIDES:
            return self.height, self.width
        return self.width, self.height


def _open(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    """Pillow's lazy open, restricted to `formats`; a known format outside them is
    `unsupported`, anything else `undecodable`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(TOO_MANY_PIXELS, str(exc)) from exc
    except Exception as exc:  # Pillow raises many types on hostile bytes; all mean the same here
        known = _known_format(data)
        if known is not None and known not in formats:
            raise ImageError(
                UNSUPPORTED, f"{known} images are not accepted; send one of {', '.join(formats)}"
            ) from exc
        raise ImageError(UNDECODABLE, f"not an image Pillow can open: {exc}") from exc


def _known_format(data: bytes) -> str | None:
    """The format whose signature the bytes start with, by Pillow's prefix checks only (no
    decoder of a format outside the allow-list runs)."""
    Image.init()
    prefix = data[:16]
    for name, (_, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # some checks read past a short prefix: no signature of theirs
            continue
    return None


def read_header(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageHeader:
    """Open `data` without decoding its pixels and check it against `limits`."""
    if not data:
        raise ImageError(EMPTY, "no image bytes")
    if len(data) > limits.max_bytes:
        raise ImageError(TOO_LARGE, f"{len(data)} bytes, limit {limits.max_bytes}")
    image = _open(data, limits.formats)
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageError(UNDECODABLE, f"empty image {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageError(TOO_MANY_PIXELS, f"{width}x{height} pixels, limit {limits.max_pixels}")
    aspect = max(width, height) / min(width, height)
    if aspect > limits.max_aspect:
        raise ImageError(
            TOO_MANY_PIXELS,
            f"{width}x{height} pixels: an aspect ratio of {aspect:.0f}:1 would be scaled up to "
            f"about {aspect:.0f} times the input's area (limit {limits.max_aspect:g}:1)",
        )
    try:
        exif = image.getexif()
        orientation = int(exif.get(_ORIENTATION, 1) or 1)
    except Exception:  # a malformed EXIF block is no reason to refuse the photo
        exif, orientation = Image.Exif(), 1
    if not 1 <= orientation <= 8:
        orientation = 1
    return ImageHeader(image, str(image.format), width, height, orientation, exif)


def decode_header(header: ImageHeader, min_side: int | None = 256) -> Image.Image:
    """The upright RGB pixels of an opened image; JPEGs are decoded at a reduced scale (1/2,
    1/4, 1/8) that keeps both sides >= `min_side`, which is several times faster for large
    photos."""
    image = header.image
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


def decode_image(
    data: bytes, min_side: int | None = 256, limits: ImageLimits = DEFAULT_LIMITS
) -> Image.Image:
    """An upright RGB image from encoded bytes, within `limits` (see `decode_header`)."""
    return decode_header(read_header(data, limits), min_side)


def read_file(path: Path) -> bytes:
    """A file's bytes; a file that cannot be read is `unreadable`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(UNREADABLE, f"{path}: {exc.strerror or exc}") from exc


def load_image(path: Path, min_side: int | None = 256) -> Image.Image:
    """`decode_image` of a file's bytes."""
    return decode_image(read_file(path), min_side=min_side)


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
