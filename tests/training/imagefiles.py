"""Small image files for the data tests, made with Pillow on the spot."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def encoded(image: Image.Image, image_format: str = "JPEG", **options: object) -> bytes:
    """The image's bytes in `image_format`."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def jpeg_bytes(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    """A plain-colour JPEG of `size` (width, height)."""
    return encoded(Image.new("RGB", size, color), "JPEG", quality=95)


def write_photos(folder: Path, names: list[str], size: tuple[int, int] = (40, 32)) -> None:
    """A JPEG per name under `folder`, each a different colour."""
    for k, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(size, (20 * k % 256, 100, 200)))


def thin_png(width: int, height: int = 4) -> bytes:
    """A plain PNG of a few hundred bytes whose short-side resize would be enormous."""
    return encoded(Image.new("RGB", (width, height), (120, 130, 140)), "PNG", optimize=True)
