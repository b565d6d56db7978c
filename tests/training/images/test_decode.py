"""Decoding hostile or unusual images: upright RGB out, or an error with a stable code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from geoverdict_training.exceptions import ImageError
from geoverdict_training.images import decode as images
from geoverdict_training.images.decode import ImageLimits, decode_image, load_image, read_header
from tests.training.imagefiles import encoded, jpeg_bytes, thin_png


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _code(data: bytes, **limits: Any) -> str:
    with pytest.raises(ImageError) as caught:
        decode_image(data, limits=ImageLimits(**limits))
    return caught.value.code


def test_jpeg_is_decoded_at_a_reduced_scale_that_keeps_min_side() -> None:
    data = jpeg_bytes((1024, 768))
    assert decode_image(data, min_side=256).size == (512, 384)
    assert decode_image(data, min_side=100).size == (256, 192)
    assert decode_image(data, min_side=None).size == (1024, 768)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encoded(Image.new("RGB", (64, 32), (0, 0, 255)), "JPEG", exif=exif.tobytes())
    image = decode_image(data)
    assert image.size == (32, 64)
    assert image.mode == "RGB"


@pytest.mark.parametrize(
    ("image", "image_format", "expected"),
    [
        (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
        (Image.new("L", (8, 8), 77), "PNG", (77, 77, 77)),
        (Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG", (255, 255, 255)),
        (Image.new("RGBA", (8, 8), (255, 0, 0, 255)), "PNG", (255, 0, 0)),
        (Image.new("LA", (8, 8), (0, 0)), "PNG", (255, 255, 255)),
        (Image.new("I;16", (8, 8), 65535), "PNG", (255, 255, 255)),
        (Image.new("I;16", (8, 8), 32896), "PNG", (128, 128, 128)),
        (Image.new("1", (8, 8), 1), "PNG", (255, 255, 255)),
    ],
)
def test_every_mode_becomes_rgb(
    image: Image.Image, image_format: str, expected: tuple[int, int, int]
) -> None:
    decoded = decode_image(encoded(image, image_format))
    assert decoded.mode == "RGB"
    assert decoded.getpixel((4, 4)) == pytest.approx(expected, abs=3)


def test_palette_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    decoded = decode_image(encoded(image, "PNG", transparency=0))
    assert decoded.getpixel((4, 4)) == (255, 255, 255)
    assert decoded.getpixel((1, 1)) == (255, 0, 0)


def test_half_transparent_pixels_blend_with_white() -> None:
    decoded = decode_image(encoded(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), "PNG"))
    assert decoded.getpixel((0, 0)) == pytest.approx((127, 127, 127), abs=1)


def test_truncated_jpeg_is_refused() -> None:
    data = encoded(_noise((256, 256)), "JPEG", quality=90)
    assert _code(data[: len(data) // 2]) == images.TRUNCATED


def test_truncated_png_is_refused() -> None:
    data = encoded(_noise((128, 128)), "PNG")
    assert _code(data[: len(data) // 2]) in (images.TRUNCATED, images.UNDECODABLE)


@pytest.mark.parametrize(
    ("data", "options", "code"),
    [
        (b"", {}, images.EMPTY),
        (b"not an image at all", {}, images.UNDECODABLE),
        (b"x", {}, images.UNDECODABLE),
        (b"\xff\xd8\xff" + bytes(100), {}, images.UNDECODABLE),
        (jpeg_bytes(), {"max_bytes": 10}, images.TOO_LARGE),
        (jpeg_bytes((64, 48)), {"max_pixels": 64 * 48 - 1}, images.TOO_MANY_PIXELS),
        (jpeg_bytes((64, 4)), {"max_aspect": 15.9}, images.TOO_MANY_PIXELS),
        (jpeg_bytes((64, 48)), {"formats": ("PNG",)}, images.UNSUPPORTED),
        (encoded(Image.new("RGB", (8, 8)), "TIFF"), {}, images.UNSUPPORTED),
        (encoded(Image.new("RGB", (16, 16)), "ICO"), {}, images.UNSUPPORTED),
    ],
)
def test_errors_carry_stable_codes(data: bytes, options: dict[str, Any], code: str) -> None:
    assert _code(data, **options) == code
    assert code in images.ERROR_CODES


@pytest.mark.parametrize("width", [20_000, 200_000])
def test_a_thin_image_is_refused_from_its_header(width: int) -> None:
    data = thin_png(width)
    assert len(data) < 3000
    with pytest.raises(ImageError) as caught:
        read_header(data)
    assert caught.value.code == images.TOO_MANY_PIXELS
    assert f"{width}x4" in str(caught.value) and "aspect ratio" in str(caught.value)


def test_a_panorama_within_the_aspect_limit_is_decoded() -> None:
    image = decode_image(thin_png(64 * 16, 64), min_side=None)
    assert image.size == (1024, 64)


def test_training_data_may_be_tiff_but_the_handler_opens_no_tiff() -> None:
    data = encoded(_noise((16, 8)), "TIFF")
    assert decode_image(data, min_side=None).size == (16, 8)
    with pytest.raises(ImageError) as caught:
        read_header(data, images.SERVING_LIMITS)
    assert caught.value.code == images.UNSUPPORTED


def test_the_default_pixel_limit_is_below_pillows_and_admits_48_megapixel_photos() -> None:
    limit = images.DEFAULT_LIMITS.max_pixels
    assert 8064 * 6048 <= limit < (Image.MAX_IMAGE_PIXELS or 89_478_485)


def test_the_header_tells_size_format_and_orientation_without_decoding() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    header = read_header(encoded(_noise((64, 32)), "JPEG", exif=exif.tobytes()))
    assert (header.format, header.width, header.height, header.orientation) == ("JPEG", 64, 32, 6)
    assert header.displayed_size == (32, 64)
    assert header.image.tile  # the decoder still to run: no pixel decoded


@pytest.mark.parametrize("limit", [2000, 1000])  # warning above the limit, error above twice it
def test_pillows_decompression_bomb_limit_is_an_error(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    assert _code(jpeg_bytes((64, 48))) == images.TOO_MANY_PIXELS


def test_load_image_reports_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "missing.jpg")
    assert caught.value.code == images.UNREADABLE


def test_decoding_and_the_transforms_module_do_not_import_torch() -> None:
    modules = "geoverdict_training.images.decode, geoverdict_training.images.transforms"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
