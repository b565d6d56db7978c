"""The photos `geoverdict demo` publishes: never ones the model was trained on.

By default: the photographs scikit-image ships (no position, so no claim), and the development
photos of the photographers the model held out for validation, with their true coordinates as
the post's claim. Which photographers those are is read from the archive itself (its training
config: manifest, validation fraction, seed; the split is deterministic). An archive that does
not say how it was trained gets no development photos: a demo must not flatter a model with the
photos it learned. With `--images DIR`, the user's photos (their GPS EXIF as the claim).
"""

from __future__ import annotations

import importlib.resources
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoverdict_common.paths import shared_data_dir

# Real photographs that scikit-image ships (no network needed); no GPS, so no claims.
SKIMAGE_PHOTOS = (
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "astronaut.png",
    "camera.png",
)


@dataclass(frozen=True)
class DemoPhoto:
    """One photo to publish, with the location its post claims (if any)."""

    name: str
    data: bytes
    claim: tuple[float, float] | None


def demo_photos(images: Path | None, limit: int, archive: Path | None = None) -> list[DemoPhoto]:
    """The user's photos, or scikit-image's plus the archive's validation photos."""
    if images is not None:
        return user_photos(images, limit)
    photos = skimage_photos()
    if archive is not None:
        photos += validation_photos(archive, max(0, limit - len(photos)))
    return photos[:limit]


def user_photos(folder: Path, limit: int) -> list[DemoPhoto]:
    """Photos of a folder, their GPS EXIF as the claim."""
    from geoverdict_common.exif import gps_position  # noqa: PLC0415
    from geoverdict_service.publisher import expand_sources  # noqa: PLC0415

    photos = []
    for source in list(expand_sources([str(folder)]))[:limit]:
        data = inline_jpeg(Path(source).read_bytes())
        try:
            claim = gps_position(Path(source))
        except ValueError:
            claim = None
        photos.append(DemoPhoto(Path(source).name, data, claim))
    return photos


def skimage_photos() -> list[DemoPhoto]:
    """The photographs scikit-image ships (where it is installed)."""
    try:
        folder = importlib.resources.files("skimage") / "data"
    except ModuleNotFoundError:
        return []
    return [
        DemoPhoto(name, inline_jpeg((folder / name).read_bytes()), None)
        for name in SKIMAGE_PHOTOS
        if (folder / name).is_file()
    ]


def training_config(archive: Path) -> dict[str, Any] | None:
    """The training config recorded in an archive's bundle, or None (not a geoverdict bundle)."""
    try:
        with zipfile.ZipFile(archive) as mar:
            metadata = json.loads(mar.read("metadata.json"))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None
    config = metadata.get("training", {}).get("config")
    return config if isinstance(config, dict) else None


def _existing(path_text: str, fallback_folder: Path) -> Path | None:
    """A path from a training config: as recorded (relative to where training ran, like the
    working directory here), else the same file name in the shared data folder."""
    path = Path(path_text)
    if path.exists():
        return path
    moved = fallback_folder / path.name
    return moved if moved.exists() else None


def validation_photos(archive: Path, limit: int) -> list[DemoPhoto]:
    """Up to `limit` photos of the photographers the archive's model was validated on (every
    k-th, so all of them are represented); none when the archive does not say."""
    config = training_config(archive)
    if not config or limit <= 0:
        return []
    from geoverdict_training.data.manifest import read_manifest  # noqa: PLC0415
    from geoverdict_training.data.splits import split_by_author  # noqa: PLC0415

    dev = shared_data_dir() / "im2gps3k-dev"
    images = _existing(str(config.get("val_images") or config.get("images") or ""), dev)
    if config.get("val_manifest"):
        manifest_path = _existing(str(config["val_manifest"]), dev)
        if manifest_path is None or images is None:
            return []
        val = read_manifest(manifest_path).with_existing_files(images)
    else:
        manifest_path = _existing(str(config.get("manifest", "")), dev)
        fraction = float(config.get("val_fraction", 0))
        if manifest_path is None or images is None or fraction <= 0:
            return []
        whole = read_manifest(manifest_path).with_existing_files(images)
        val = split_by_author(whole, fraction, int(config.get("split_seed", 0))).val
    step = max(1, -(-len(val) // limit))  # ceil: at most `limit`
    return [
        DemoPhoto(
            val.image_ids[k],
            (images / val.image_ids[k]).read_bytes(),
            (float(val.lat[k]), float(val.lon[k])),
        )
        for k in range(0, len(val), step)
    ][:limit]


def inline_jpeg(data: bytes) -> bytes:
    """Photos small enough to travel inline in a Kafka message (re-encoded as JPEG if not)."""
    from geoverdict_service.publisher import MAX_INLINE_BYTES  # noqa: PLC0415

    if len(data) <= MAX_INLINE_BYTES:
        return data
    from PIL import Image  # noqa: PLC0415

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        rgb.thumbnail((1600, 1600))
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=88)
    return out.getvalue()
