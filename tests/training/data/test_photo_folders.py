"""A manifest from the GPS EXIF of a folder of photos."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from geoverdict_training.data.manifest import read_manifest, write_manifest
from geoverdict_training.data.photo_folders import gps_position, manifest_from_exif
from tests.training.imagefiles import encoded


def _photo(path: Path, gps: dict[int, object] | None, image_format: str = "JPEG") -> None:
    exif = Image.Exif()
    if gps is not None:
        exif[0x8825] = gps
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded(Image.new("RGB", (16, 16)), image_format, exif=exif.tobytes()))


SYDNEY = {1: "S", 2: (33.0, 52.0, 4.8), 3: "E", 4: (151.0, 12.0, 36.0)}
NEW_YORK = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 22.0)}


def test_gps_position_reads_degrees_minutes_seconds_and_references(tmp_path: Path) -> None:
    _photo(tmp_path / "s.jpg", SYDNEY)
    _photo(tmp_path / "n.jpg", NEW_YORK)
    assert gps_position(tmp_path / "s.jpg") == pytest.approx((-33.868, 151.21))
    assert gps_position(tmp_path / "n.jpg") == pytest.approx((40.712778, -74.006111))
    _photo(tmp_path / "none.jpg", None)
    assert gps_position(tmp_path / "none.jpg") is None


def test_manifest_keeps_photos_with_a_position_and_counts_the_rest(tmp_path: Path) -> None:
    _photo(tmp_path / "trip" / "sydney.jpg", SYDNEY)
    _photo(tmp_path / "ny.png", NEW_YORK, "PNG")
    _photo(tmp_path / "nogps.jpg", None)
    _photo(tmp_path / "nofix.jpg", {1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)})
    _photo(tmp_path / "bad.jpg", {1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)})
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    manifest = manifest_from_exif(tmp_path)
    assert manifest.image_ids == ["ny.png", "trip/sydney.jpg"]
    assert manifest.lat.tolist() == pytest.approx([40.712778, -33.868])
    assert (manifest.scenes == -1).all()
    assert manifest.skips.summary() == (
        f"photos in {tmp_path}: 6 rows, 2 kept, 4 skipped (1 GPS at (0, 0), 1 bad GPS EXIF, "
        "1 no GPS EXIF, 1 unreadable image or EXIF)"
    )
    write_manifest(manifest, tmp_path / "manifest.csv")
    back = read_manifest(tmp_path / "manifest.csv")
    assert back.image_ids == manifest.image_ids
    assert back.lon.tolist() == manifest.lon.tolist()
