"""Small photos with GPS EXIF, made with Pillow on the spot."""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image

GPS_IFD = 0x8825
# GPS IFD tags: 1 latitude ref, 2 latitude (deg, min, sec), 3 longitude ref, 4 longitude.
SYDNEY_GPS = {1: "S", 2: (33.0, 52.0, 4.8), 3: "E", 4: (151.0, 12.0, 36.0)}  # -33.868, 151.21
NEW_YORK_GPS = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 22.0)}  # 40.7128, -74.0061


def gps_photo(
    gps: Mapping[int, object] | None,
    image_format: str = "JPEG",
    size: tuple[int, int] = (16, 16),
) -> bytes:
    """An encoded photo whose EXIF holds `gps` as its GPS IFD (no EXIF GPS when None)."""
    exif = Image.Exif()
    if gps is not None:
        exif[GPS_IFD] = dict(gps)
    out = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(out, image_format, exif=exif.tobytes())
    return out.getvalue()


# -- what a public stream sends: one builder per kind of hostile or unusual image -------------


def _encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def truncated_jpeg(photo: bytes) -> bytes:
    """An upload cut off halfway."""
    return photo[: len(photo) // 2]


def cmyk_jpeg(photo: bytes) -> bytes:
    """The photo as a print-shop CMYK JPEG."""
    with Image.open(io.BytesIO(photo)) as image:
        return _encode(image.convert("CMYK"), "JPEG", quality=90)


def palette_png_with_transparency(photo: bytes) -> bytes:
    """A 256-colour palette PNG with a transparent colour."""
    with Image.open(io.BytesIO(photo)) as image:
        palette = image.convert("RGB").quantize(colors=256)
    return _encode(palette, "PNG", transparency=0)


def png16(photo: bytes) -> bytes:
    """A 16-bit greyscale PNG."""
    with Image.open(io.BytesIO(photo)) as image:
        grey = image.convert("L")
    import numpy as np

    levels = np.asarray(grey, dtype="<u2") * 257  # 8-bit 0..255 -> 16-bit 0..65535
    return _encode(Image.frombytes("I;16", grey.size, levels.tobytes()), "PNG")


def heic(photo: bytes) -> bytes:
    """The photo as a phone's HEIC."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(photo)) as image:
        return _encode(image.convert("RGB"), "HEIF", quality=90)


def exif_rotated_pair(photo: bytes) -> tuple[bytes, bytes]:
    """(upright JPEG, the same pixels stored turned by 90 degrees with EXIF orientation 6)."""
    with Image.open(io.BytesIO(photo)) as image:
        upright = image.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the pixels are stored turned 90 degrees CCW
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    return (
        _encode(upright, "JPEG", quality=95),
        _encode(stored, "JPEG", quality=95, exif=exif.tobytes()),
    )


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb), in 100 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )
