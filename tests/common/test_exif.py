"""GPS positions from a photo's EXIF (geoverdict_common/exif.py: publish and the handler)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import pytest
from PIL import Image, TiffImagePlugin

from geoverdict_common.exif import gps_from_exif, gps_position
from tests.photos import NEW_YORK_GPS, SYDNEY_GPS, gps_photo

SYDNEY = (-33.868, 151.21)
NEW_YORK = (40.712778, -74.006111)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_position_from_bytes_and_files_with_every_hemisphere(
    tmp_path: Path, image_format: str
) -> None:
    assert gps_position(gps_photo(SYDNEY_GPS, image_format)) == pytest.approx(SYDNEY)
    path = tmp_path / "ny.img"
    path.write_bytes(gps_photo(NEW_YORK_GPS, image_format))
    assert gps_position(path) == pytest.approx(NEW_YORK)


def test_references_as_nul_padded_bytes_and_missing_references() -> None:
    padded = {**SYDNEY_GPS, 1: b"S\x00", 3: b"W\x00"}
    assert gps_position(gps_photo(padded)) == pytest.approx((-33.868, -151.21))
    no_refs = {2: SYDNEY_GPS[2], 4: SYDNEY_GPS[4]}  # north and east by default
    assert gps_position(gps_photo(no_refs)) == pytest.approx((33.868, 151.21))


def test_gps_from_an_opened_image() -> None:
    with Image.open(io.BytesIO(gps_photo(SYDNEY_GPS))) as image:
        assert gps_from_exif(image.getexif()) == pytest.approx(SYDNEY)


INVALID: dict[str, Mapping[int, object] | None] = {
    "no GPS at all": None,
    "no longitude": {1: "N", 2: (40.0, 42.0, 46.0)},
    "latitude past the pole": {**SYDNEY_GPS, 2: (95.0, 0.0, 0.0)},
    "longitude past 180": {**SYDNEY_GPS, 4: (181.0, 0.0, 0.0)},
    "two components": {**SYDNEY_GPS, 2: (33.0, 52.0)},
    "zero denominator": {
        **SYDNEY_GPS,
        2: tuple(TiffImagePlugin.IFDRational(n, d) for n, d in ((33, 0), (0, 1), (0, 1))),
    },
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_an_absent_or_impossible_position_is_none(case: str) -> None:
    assert gps_position(gps_photo(INVALID[case])) is None


def test_what_is_not_an_image_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an image"):
        gps_position(b"%PDF-1.7 not a photo")
    (tmp_path / "notes.jpg").write_text("not a photo either")
    with pytest.raises(ValueError, match="not an image"):
        gps_position(tmp_path / "notes.jpg")
