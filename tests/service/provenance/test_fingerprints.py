"""Perceptual fingerprints: reposts of a photo match it, distinct photos and flat images do not,
and bytes that are no image (or a decompression bomb) are refused."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from geoverdict_service.exceptions import FingerprintError
from geoverdict_service.provenance.fingerprints import (
    HASH_BYTES,
    MATCH_DISTANCE,
    Fingerprint,
    decode,
    distance,
    fingerprint,
    trim,
)

pytestmark = pytest.mark.shared_data


def _best(query: Fingerprint, indexed: Fingerprint) -> int:
    return min(distance(a, b) for a in query.queries() for b in indexed.hashes)


def _jpeg(image: Image.Image, quality: int = 85, **extra: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, **extra)
    return out.getvalue()


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> list[Image.Image]:
    paths = sorted((shared_data / "im2gps3k-dev" / "images").glob("*.jpg"))[:2]
    return [Image.open(path).convert("RGB") for path in paths]


def test_a_re_encoded_copy_is_within_the_match_distance(photos: list[Image.Image]) -> None:
    original = fingerprint(_jpeg(photos[0], 90))
    copy = fingerprint(_jpeg(photos[0].resize((photos[0].width // 2, photos[0].height // 2)), 50))
    assert original.usable and copy.usable
    assert distance(copy.hashes[0], original.hashes[0]) <= MATCH_DISTANCE


def test_a_mirrored_copy_matches_through_its_variants(photos: list[Image.Image]) -> None:
    original = fingerprint(_jpeg(photos[0]))
    mirror = fingerprint(_jpeg(photos[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    assert distance(mirror.hashes[0], original.hashes[0]) > MATCH_DISTANCE  # plain PDQ misses it
    assert _best(mirror, original) <= MATCH_DISTANCE


def test_a_bordered_copy_matches_through_its_trimmed_hash(photos: list[Image.Image]) -> None:
    original = fingerprint(_jpeg(photos[0]))
    data = _jpeg(ImageOps.expand(photos[0], border=24, fill="white"))
    assert trim(decode(data)).shape == decode(_jpeg(photos[0])).shape  # the border is gone
    bordered = fingerprint(data)
    assert distance(bordered.hashes[0], original.hashes[0]) > MATCH_DISTANCE
    trimmed = bordered.hashes[1]  # after the plain hash, as trimming changed the image
    assert min(distance(trimmed, h) for h in original.hashes) <= MATCH_DISTANCE


def test_a_mirrored_copy_with_a_border_matches(photos: list[Image.Image]) -> None:
    # found by a new user on the local stack: the plain view's variants alone missed it
    original = fingerprint(_jpeg(photos[0]))
    mirrored = photos[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = io.BytesIO()
    ImageOps.expand(mirrored, border=20, fill="white").save(out, "PNG")
    assert _best(fingerprint(out.getvalue()), original) <= MATCH_DISTANCE


def test_a_transparent_margin_reads_as_a_white_border(photos: list[Image.Image]) -> None:
    original = fingerprint(_jpeg(photos[0]))
    canvas = Image.new("RGBA", (photos[0].width + 80, photos[0].height + 80), (0, 0, 0, 0))
    canvas.paste(photos[0], (40, 40))
    out = io.BytesIO()
    canvas.save(out, "PNG")
    assert decode(out.getvalue())[0, 0].tolist() == [255, 255, 255]  # not transparent black
    transparent = fingerprint(out.getvalue())
    assert min(distance(q, h) for q in transparent.hashes for h in original.hashes) <= 20


def test_an_exif_rotated_copy_hashes_as_displayed(photos: list[Image.Image]) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: stored turned the other way
    stored = photos[0].transpose(Image.Transpose.ROTATE_90)
    upright = fingerprint(_jpeg(photos[0]))
    assert distance(fingerprint(_jpeg(stored, exif=exif)).hashes[0], upright.hashes[0]) <= 16


def test_two_different_photos_do_not_match(photos: list[Image.Image]) -> None:
    a, b = (fingerprint(_jpeg(photo)) for photo in photos)
    assert _best(a, b) > MATCH_DISTANCE
    assert _best(b, a) > MATCH_DISTANCE


def test_a_flat_image_is_not_usable() -> None:
    flat = fingerprint(_jpeg(Image.new("RGB", (640, 480), (120, 160, 200))))
    assert not flat.usable


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\0" * 64])
def test_bytes_that_are_no_image_raise(data: bytes) -> None:
    with pytest.raises(FingerprintError):
        fingerprint(data)


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(out, "PNG")  # 144 Mpx in a few kB
    with pytest.raises(FingerprintError, match="pixels"):
        fingerprint(out.getvalue())


def test_json_round_trip(photos: list[Image.Image]) -> None:
    original = fingerprint(_jpeg(photos[0]))
    stored = json.loads(json.dumps(original.to_json()))
    assert Fingerprint.from_json(stored) == original
    assert all(len(h) == HASH_BYTES for h in original.queries())


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"hashes": ["00" * 32], "variants": []},  # no quality
        {"hashes": ["00" * 32], "quality": 101, "variants": []},
        {"hashes": ["00" * 32], "quality": True, "variants": []},
        {"hashes": [], "quality": 80, "variants": []},
        {"hashes": ["00" * 31], "quality": 80, "variants": []},
        {"hashes": ["zz" * 32], "quality": 80, "variants": []},
        {"hashes": ["00" * 32], "quality": 80},
        {"hashes": "00" * 32, "quality": 80, "variants": []},
    ],
)
def test_malformed_json_raises_value_error(doc: Any) -> None:
    with pytest.raises(ValueError):
        Fingerprint.from_json(doc)


def test_distance_refuses_hashes_of_the_wrong_size() -> None:
    assert distance(b"\0" * 32, b"\xff" * 32) == 256
    with pytest.raises(ValueError):
        distance(b"\0" * 31, b"\0" * 32)
