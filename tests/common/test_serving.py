"""Serving settings: checked; and the demo archive in the real TorchServe (integration): a batch
of what a public stream sends, each item answered on its own, server-side batches that really
fill."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from geoverdict_common import contract
from geoverdict_common.exceptions import ServingConfigError
from geoverdict_common.serving import ServingConfig
from geoverdict_service.exceptions import BadImageError
from geoverdict_service.model_servers.tokens import TokenSource
from geoverdict_service.model_servers.torchserve import TorchServeClient
from geoverdict_stack.stack import Stack
from tests import photos
from tests.stack_fixtures import serve_demo_archive


def test_serving_settings_are_checked() -> None:
    with pytest.raises(ServingConfigError, match="batch_size must be >= 1"):
        ServingConfig(batch_size=0)
    assert "maxWorkers: 2" in ServingConfig(min_workers=1, max_workers=2).to_yaml()


@pytest.fixture(scope="module")
def served(stack: Stack) -> str:
    """The demo archive, registered with room for one big batch (16, 1 s delay)."""
    return serve_demo_archive(stack, "serving-test", batch_size=16, max_batch_delay_ms=1000)


@pytest.fixture(scope="module")
def client(stack: Stack, served: str) -> TorchServeClient:
    return TorchServeClient(
        stack.torchserve.url("inference"),
        served,
        TokenSource(key_file=stack.torchserve_key_file),
        concurrency=16,
        retries=1,
    )


def _dev_photos(shared_data: Path, count: int) -> list[bytes]:
    images = sorted((shared_data / "im2gps3k-dev" / "images").glob("*.jpg"))[:count]
    return [p.read_bytes() for p in images]


@pytest.mark.integration
def test_one_batch_of_hostile_and_unusual_images_is_answered_item_by_item(
    client: TorchServeClient, shared_data: Path
) -> None:
    good_a, good_b, base = _dev_photos(shared_data, 3)
    upright, rotated = photos.exif_rotated_pair(base)
    items = {
        "good photo": good_a,
        "another good photo": good_b,
        "truncated JPEG": photos.truncated_jpeg(good_a),
        "text file": b"Dear diary, today I took no photo at all.\n" * 10,
        "PNG decompression bomb": photos.png_bomb(),
        "CMYK JPEG": photos.cmyk_jpeg(good_b),
        "palette PNG with transparency": photos.palette_png_with_transparency(good_a),
        "16-bit PNG": photos.png16(good_b),
        "HEIC": photos.heic(good_a),
        "upright": upright,
        "EXIF-rotated JPEG": rotated,
    }
    expected_errors = {
        "truncated JPEG": "truncated",
        "text file": "undecodable",
        "PNG decompression bomb": "too_many_pixels",
    }
    replies = dict(zip(items, client.predict_many(list(items.values())), strict=True))
    for name, reply in replies.items():
        if name in expected_errors:
            assert isinstance(reply, BadImageError), name
            assert reply.code == expected_errors[name], (name, reply)
            assert reply.model_version, name
        else:
            assert not isinstance(reply, BadImageError), (name, reply)
            assert contract.check(contract.PREDICTION, reply) == [], name
    # The rotated photo is the upright one once its EXIF orientation is applied.
    a, b = replies["upright"], replies["EXIF-rotated JPEG"]
    assert not isinstance(a, BadImageError) and not isinstance(b, BadImageError)
    assert (b["image"]["width"], b["image"]["height"]) == (
        a["image"]["width"],
        a["image"]["height"],
    )
    assert b["best_guess"]["token"] == a["best_guess"]["token"]
    assert b["best_guess"]["probability"] == pytest.approx(a["best_guess"]["probability"], abs=0.03)
    # Every good item came from the same model.
    versions = {
        r.model_version if isinstance(r, BadImageError) else r["model_version"]
        for r in replies.values()
    }
    assert len(versions) == 1


@pytest.mark.integration
def test_concurrent_requests_fill_server_side_batches(
    stack: Stack, client: TorchServeClient, served: str, shared_data: Path
) -> None:
    images = _dev_photos(shared_data, 32)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client.predict, images))
    with urllib.request.urlopen(stack.torchserve.url("metrics") + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    sizes = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("BatchSize{") and f'ModelName="{served}"' in line
    ]
    assert sizes, "the handler reports no BatchSize metric"
    assert max(sizes) > 1
