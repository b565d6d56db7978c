"""Batched decoding on a device (here the CPU): upright as Pillow, the same crops, the same
answers; whatever the device cannot take is decoded by Pillow, photo by photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geoverdict_common.paths import model_store_dir
from geoverdict_training.exceptions import ImageError
from geoverdict_training.images import device as device_images
from geoverdict_training.images.decode import decode_image
from geoverdict_training.images.device import (
    DecodedImage,
    centre_crop,
    decode_batch,
    model_input,
    random_crop,
)
from geoverdict_training.images.transforms import InputSpec, eval_transform
from geoverdict_training.serving.responder import Responder, ResponderOptions
from tests.training.imagefiles import encoded, thin_png

CPU = torch.device("cpu")


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _jpeg(image: Image.Image, orientation: int = 1, **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(image, "JPEG", quality=95, exif=exif.tobytes(), **options)


def _decoded(body: bytes) -> DecodedImage:
    (result,) = decode_batch([body], CPU, min_side=None)
    assert isinstance(result, DecodedImage)
    return result


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_upright_as_pillow_shows_it(orientation: int) -> None:
    body = _jpeg(_noise((40, 24)), orientation)
    result = _decoded(body)
    assert result.on_device and result.pixels is not None
    pillow = np.asarray(decode_image(body, min_side=None)).transpose(2, 0, 1)  # (3, H, W)
    assert result.pixels.numpy().tolist() == pillow.tolist()


@pytest.mark.parametrize(
    ("body", "on_device"),
    [
        (_jpeg(_noise((32, 24))), True),
        (_jpeg(_noise((32, 24)).convert("L")), True),
        (_jpeg(_noise((32, 24)), progressive=True), True),
        (encoded(_noise((32, 24)).convert("CMYK"), "JPEG"), False),
        (encoded(_noise((32, 24)), "PNG"), False),
        (encoded(_noise((32, 24)), "WEBP"), False),
        (_jpeg(_noise((32, 24))) + b"trailing bytes", False),
    ],
)
def test_what_the_device_is_not_given_pillow_decodes(body: bytes, on_device: bool) -> None:
    result = _decoded(body)
    assert result.on_device is on_device
    pillow = decode_image(body, min_side=None)
    if result.pixels is not None:
        assert tuple(result.pixels.shape) == (3, pillow.height, pillow.width)
    else:
        assert result.pillow is not None and result.pillow.size == pillow.size


def test_bad_photos_fail_alone_with_the_pillow_paths_codes() -> None:
    good = _jpeg(_noise((64, 48)))
    bodies = [good, good[: len(good) // 2], b"", thin_png(20_000), b"text", good]
    results = decode_batch(bodies, CPU)
    codes = [r.code if isinstance(r, ImageError) else None for r in results]
    assert codes == [None, "truncated", "empty", "too_many_pixels", "undecodable", None]
    assert all(r.on_device for r in results if isinstance(r, DecodedImage))


def test_a_batch_larger_than_the_pixel_budget_is_decoded_in_several_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = device_images._decode_on_device

    def counting(data: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
        calls.append(len(data))
        return real(data, device)

    monkeypatch.setattr(device_images, "_decode_on_device", counting)
    monkeypatch.setattr(device_images, "DEVICE_BATCH_PIXELS", 2 * 64 * 48)
    results = decode_batch([_jpeg(_noise((64, 48), seed)) for seed in range(5)], CPU)
    assert calls == [2, 2, 1]
    assert all(isinstance(r, DecodedImage) and r.on_device for r in results)


def test_the_centre_crop_matches_the_pillow_transform() -> None:
    spec = InputSpec(size=64, resize=72, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    image = _noise((150, 100)).resize((150, 100), Image.Resampling.BILINEAR)
    result = _decoded(_jpeg(image))
    assert result.pixels is not None
    tensor = model_input([centre_crop(result.pixels, spec)], spec, CPU)[0]  # (3, 64, 64)
    assert result.pillow is None
    pillow = eval_transform(spec.size, spec.resize, spec.mean, spec.std)(
        decode_image(_jpeg(image), min_side=None)
    )
    # Antialiased resizes of torch and Pillow round differently: within 2 of 255 a pixel.
    assert (tensor - pillow).abs().max().item() < 2 / 255 / min(spec.std)


def test_model_input_keeps_the_order_of_mixed_crops() -> None:
    spec = InputSpec(size=4, resize=4, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    white = torch.full((3, 4, 4), 255, dtype=torch.uint8)  # a device crop
    grey = torch.full((3, 4, 4), 0.5)  # a Pillow crop, already normalised
    batch = model_input([grey, white, grey], spec, CPU)
    assert batch.shape == (3, 3, 4, 4)
    assert batch[:, 0, 0, 0].tolist() == [0.5, 1.0, 0.5]


def test_random_crops_are_square_and_sometimes_flipped() -> None:
    torch.manual_seed(0)
    image = torch.arange(3 * 40 * 60, dtype=torch.int64).reshape(3, 40, 60).to(torch.uint8)
    crops = [random_crop(image, 16, (0.66, 1.0)) for _ in range(40)]
    assert {tuple(c.shape) for c in crops} == {(3, 16, 16)}
    assert {c.dtype for c in crops} == {torch.uint8}
    # a left-to-right ramp: a flipped crop decreases along the row
    flipped = sum(int(c[0, 8, 0]) > int(c[0, 8, -1]) for c in crops)
    assert 8 <= flipped <= 32


# Photos compared between the two paths: every 20th development photo, 100 in all (the whole
# set of 1,995 agreed on 1,994 top cells, probabilities within 0.0003, on this project's CPU).
AGREEMENT_STEP = 20


def _responder(archive: Path, decode: str) -> Responder:
    return Responder.from_archive(
        archive, options=ResponderOptions.from_mapping({"decode": decode})
    )


def _cells(responder: Responder, bodies: list[bytes]) -> np.ndarray:
    items = responder.infer(responder.prepare(bodies))
    return np.stack([item.result[0] for item in items if item.result is not None])  # (B, n_fine)


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_device_path_answers_as_the_pillow_path_on_the_development_photos(
    shared_data: Path,
) -> None:
    archive = model_store_dir() / "geoverdict.mar"
    if not archive.is_file():
        pytest.skip("the demo archive model_store/geoverdict.mar is not here")
    photos = sorted((shared_data / "im2gps3k-dev" / "images").glob("*.jpg"))[::AGREEMENT_STEP]
    bodies = [photo.read_bytes() for photo in photos]
    on_pillow, on_device = _responder(archive, "pillow"), _responder(archive, "device")
    batches = [bodies[k : k + 50] for k in range(0, len(bodies), 50)]
    pillow = np.concatenate([_cells(on_pillow, batch) for batch in batches])
    device = np.concatenate([_cells(on_device, batch) for batch in batches])
    assert len(photos) == pillow.shape[0] == device.shape[0] == 100
    assert (pillow.argmax(axis=1) == device.argmax(axis=1)).mean() >= 0.99
    assert np.abs(pillow - device).max() <= 0.02
