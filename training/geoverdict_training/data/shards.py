"""MP-16-style msgpack shards: `shard_N.msg` files, each a stream of `{"image": <jpeg bytes>,
"id": <IMG_ID>}` records, the layout the public MP-16 release ships (4096 records a shard).

Labels are not stored in shards; a dataset looks each record's id up in a manifest, so the same
shards serve any partition. Reading is tolerant of the public files, whose msgpack may carry
keys and ids as raw bytes.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
from PIL import Image

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.data.skips import Skips
from geoverdict_training.exceptions import ConfigError, DataFileError, ImageError
from geoverdict_training.images.decode import decode_image

log = logging.getLogger(__name__)

SHARD_PATTERN = re.compile(r"shard_(\d+)\.msg")
DEFAULT_SHARD_SIZE = 4096
_MAX_RECORD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Record:
    """One shard record: an image's encoded bytes and its IMG_ID."""

    image_id: str
    image: bytes


def list_shards(shard_dir: Path) -> list[Path]:
    """The `shard_N.msg` files of a folder, in order of N; raises DataFileError if none."""
    if not shard_dir.is_dir():
        raise DataFileError(f"shard folder {shard_dir} is not a folder")
    found = [
        (int(match.group(1)), path)
        for path in shard_dir.iterdir()
        if (match := SHARD_PATTERN.fullmatch(path.name)) and path.is_file()
    ]
    if not found:
        raise DataFileError(f"no shard_N.msg files in {shard_dir}")
    return [path for _, path in sorted(found)]


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def read_records(shard: Path) -> Iterator[Record | None]:
    """The records of one shard; None for a record without image bytes or id (to be counted)."""
    try:
        with shard.open("rb") as handle:
            unpacker = msgpack.Unpacker(handle, raw=True, max_buffer_size=_MAX_RECORD_BYTES)
            for item in unpacker:
                if not isinstance(item, dict):
                    yield None
                    continue
                fields = {_text(key): value for key, value in item.items()}
                image_id, image = _text(fields.get("id")), fields.get("image")
                if image_id is None or not isinstance(image, bytes):
                    yield None
                    continue
                yield Record(image_id=image_id, image=image)
            size = handle.seek(0, io.SEEK_END)
    except OSError as exc:
        raise DataFileError(f"cannot read shard {shard}: {exc.strerror or exc}") from exc
    except (msgpack.UnpackException, ValueError) as exc:
        raise DataFileError(f"shard {shard} is not msgpack: {exc}") from exc
    if unpacker.tell() != size:
        raise DataFileError(f"shard {shard} ends inside a record (truncated?)")


def _shard_bytes(path: Path, short_side: int | None) -> bytes:
    """The bytes to store: the JPEG file itself where it is small enough, else a JPEG re-encoding
    (upright RGB, short side scaled down to `short_side`, as MP-16 stores 320 px thumbnails)."""
    data = path.read_bytes()
    image = decode_image(data, min_side=short_side)  # refuses what training could not decode
    is_jpeg = data[:3] == b"\xff\xd8\xff"
    if is_jpeg and (short_side is None or min(image.size) <= short_side):
        return data
    if short_side is not None and min(image.size) > short_side:
        scale = short_side / min(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_shards(
    manifest: Manifest,
    image_dir: Path,
    out_dir: Path,
    shard_size: int = DEFAULT_SHARD_SIZE,
    short_side: int | None = None,
) -> Skips:
    """Write the manifest's images into `out_dir/shard_N.msg`; returns the tally of skipped rows
    (missing or undecodable images). Refuses a folder that already holds shards."""
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if any(SHARD_PATTERN.fullmatch(p.name) for p in out_dir.iterdir()):
            raise DataFileError(f"{out_dir} already holds shards; choose an empty folder")
        return _write(manifest, image_dir, out_dir, shard_size, short_side)
    except OSError as exc:
        raise DataFileError(f"cannot write shards to {out_dir}: {exc.strerror or exc}") from exc


def _write(
    manifest: Manifest, image_dir: Path, out_dir: Path, shard_size: int, short_side: int | None
) -> Skips:
    skips = Skips(f"shards from {image_dir}")
    shard_index, in_shard = 0, 0
    handle = None
    try:
        for image_id in manifest.image_ids:
            skips.seen += 1
            try:
                image = _shard_bytes(image_dir / image_id, short_side)
            except FileNotFoundError:
                skips.skip("missing file")
                continue
            except ImageError as exc:
                skips.skip(f"image {exc.code}")
                continue
            except OSError:
                skips.skip("unreadable file")
                continue
            if handle is None or in_shard == shard_size:
                if handle is not None:
                    handle.close()
                    shard_index += 1
                handle = (out_dir / f"shard_{shard_index}.msg").open("wb")
                in_shard = 0
            handle.write(msgpack.packb({"image": image, "id": image_id}, use_bin_type=True))
            in_shard += 1
    finally:
        if handle is not None:
            handle.close()
    return skips
