"""MP-16-style msgpack shards: written from a manifest and folder, read back as records."""

from __future__ import annotations

import io
from pathlib import Path

import msgpack
import numpy as np
import pytest
from PIL import Image

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.data.shards import list_shards, read_records, write_shards
from geoverdict_training.exceptions import ConfigError, DataFileError
from tests.training.imagefiles import encoded, jpeg_bytes, write_photos


def _manifest(names: list[str]) -> Manifest:
    n = len(names)
    return Manifest(names, np.zeros(n), np.zeros(n), np.full((n, 3), -1, np.int64))


def _all_records(shard_dir: Path) -> list:
    return [record for shard in list_shards(shard_dir) for record in read_records(shard)]


def test_shards_hold_each_image_once_in_shard_size_chunks(tmp_path: Path) -> None:
    names = [f"p{k}.jpg" for k in range(5)]
    write_photos(tmp_path / "images", names)
    skips = write_shards(_manifest(names), tmp_path / "images", tmp_path / "shards", shard_size=2)
    shards = list_shards(tmp_path / "shards")
    assert [p.name for p in shards] == ["shard_0.msg", "shard_1.msg", "shard_2.msg"]
    records = _all_records(tmp_path / "shards")
    assert [r.image_id for r in records] == names
    # JPEGs are stored byte for byte.
    assert records[3].image == (tmp_path / "images" / "p3.jpg").read_bytes()
    assert skips.summary().endswith("5 rows, 5 kept, 0 skipped")


def test_missing_and_undecodable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    write_photos(folder, ["good.jpg"])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    manifest = _manifest(["good.jpg", "broken.jpg", "gone.jpg"])
    skips = write_shards(manifest, folder, tmp_path / "shards")
    assert [r.image_id for r in _all_records(tmp_path / "shards")] == ["good.jpg"]
    assert skips.summary().endswith(
        "3 rows, 1 kept, 2 skipped (1 image undecodable, 1 missing file)"
    )


def test_other_formats_and_large_images_are_stored_as_small_jpegs(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(encoded(Image.new("RGBA", (50, 40), (0, 0, 0, 0)), "PNG"))
    (folder / "big.jpg").write_bytes(jpeg_bytes((800, 600)))
    write_shards(_manifest(["a.png", "big.jpg"]), folder, tmp_path / "shards", short_side=100)
    png, big = _all_records(tmp_path / "shards")
    for record, size in ((png, (50, 40)), (big, (133, 100))):
        image = Image.open(io.BytesIO(record.image))
        assert image.format == "JPEG"
        assert image.size == size
    assert Image.open(io.BytesIO(png.image)).getpixel((0, 0)) == pytest.approx(
        (255, 255, 255), abs=2
    )


def test_a_folder_with_shards_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "shard_0.msg").write_bytes(b"")
    with pytest.raises(DataFileError, match="already holds"):
        write_shards(_manifest([]), tmp_path, tmp_path / "shards")
    with pytest.raises(ConfigError):
        write_shards(_manifest([]), tmp_path, tmp_path / "other", shard_size=0)


def test_shards_are_listed_in_numeric_order(tmp_path: Path) -> None:
    for k in (10, 2, 1):
        (tmp_path / f"shard_{k}.msg").write_bytes(b"")
    (tmp_path / "shard_x.msg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in list_shards(tmp_path)] == ["shard_1.msg", "shard_2.msg", "shard_10.msg"]
    with pytest.raises(DataFileError, match="not a folder"):
        list_shards(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="no shard_N"):
        list_shards(tmp_path / "empty")


def test_records_with_raw_bytes_keys_as_old_msgpack_wrote_them_are_read(tmp_path: Path) -> None:
    path = tmp_path / "shard_0.msg"
    with path.open("wb") as handle:
        handle.write(
            msgpack.packb({"image": b"\xff\xd8\xffjpeg", "id": "a.jpg"}, use_bin_type=False)
        )
        handle.write(msgpack.packb({b"image": b"xyz", b"id": b"b.jpg"}, use_bin_type=True))
        handle.write(msgpack.packb({"id": "no image"}, use_bin_type=True))
        handle.write(msgpack.packb([1, 2], use_bin_type=True))
    records = list(read_records(path))
    assert [r.image_id if r else None for r in records] == ["a.jpg", "b.jpg", None, None]
    assert records[0] is not None and records[0].image == b"\xff\xd8\xffjpeg"


def test_a_damaged_shard_is_a_data_file_error(tmp_path: Path) -> None:
    path = tmp_path / "shard_0.msg"
    path.write_bytes(msgpack.packb({"image": b"x", "id": "a"}) + b"\xc1\xc1\xc1")
    with pytest.raises(DataFileError, match="not msgpack"):
        list(read_records(path))


def test_a_truncated_shard_is_a_data_file_error_after_its_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "shard_0.msg"
    whole = msgpack.packb({"image": b"x", "id": "a"})
    path.write_bytes(whole + msgpack.packb({"image": b"y" * 100, "id": "b"})[:40])
    records = read_records(path)
    assert next(records).image_id == "a"  # type: ignore[union-attr]
    with pytest.raises(DataFileError, match="ends inside a record"):
        next(records)
