"""A manifest from a folder of photos that carry GPS EXIF: the easiest way to own training data.

Only the file headers are read (Pillow opens lazily), so a folder of thousands of photos takes
seconds. Photos without a GPS position, with an unreadable one, or at exactly (0, 0) (what some
cameras write when they have no fix) are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from geoverdict_common.exif import gps_position
from geoverdict_training.data.manifest import Manifest, valid_coordinates
from geoverdict_training.data.skips import Skips
from geoverdict_training.images import decode as images  # noqa: F401 (registers the HEIF opener)
from geoverdict_training.vocabulary import SCENE_COLUMNS

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif"}
)


def _photos(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            yield path


def manifest_from_exif(folder: Path) -> Manifest:
    """A manifest (IMG_ID relative to `folder`, LAT, LON) of the photos with a GPS position."""
    skips = Skips(f"photos in {folder}")
    ids: list[str] = []
    coords: list[tuple[float, float]] = []
    for path in _photos(folder):
        skips.seen += 1
        try:
            position = gps_position(path, raw=True)
        except (OSError, ValueError, ZeroDivisionError, SyntaxError):
            skips.skip("unreadable image or EXIF")
            continue
        if position is None:
            skips.skip("no GPS EXIF")
        elif not valid_coordinates(*position):
            skips.skip("bad GPS EXIF")
        elif position == (0.0, 0.0):
            skips.skip("GPS at (0, 0)")
        else:
            ids.append(path.relative_to(folder).as_posix())
            coords.append(position)
    array = np.array(coords, dtype=np.float64).reshape(-1, 2)  # (N, 2)
    return Manifest(
        image_ids=ids,
        lat=array[:, 0].copy(),
        lon=array[:, 1].copy(),
        scenes=np.full((len(ids), len(SCENE_COLUMNS)), -1, dtype=np.int64),
        skips=skips,
    )
