"""Images signed by the tests with c2pa-python and the test certificate in ../shared/data/c2pa
(never copied into the repository): tests that need it skip where it is absent."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import c2pa
import pytest
from PIL import Image

from geoverdict_common.paths import SHARED_DATA_ENV, shared_data_dir

AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


def c2pa_dir() -> Path:
    """../shared/data/c2pa; skips the test where the test certificate is absent."""
    path = shared_data_dir() / "c2pa"
    if not (path / "es256_certs.pem").is_file():
        pytest.skip(f"C2PA samples and test certificate not found at {path}; set {SHARED_DATA_ENV}")
    return path


def created(source: str = CAPTURE_SOURCE) -> dict[str, Any]:
    """A c2pa.actions assertion with one c2pa.created action (a manifest must start with one)."""
    return {
        "label": "c2pa.actions",
        "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": source}]},
    }


def photo(fmt: str = "JPEG", size: tuple[int, int] = (320, 240)) -> bytes:
    """A small unsigned photo-like image in `fmt`."""
    image = Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def sign(
    image: bytes,
    mime: str,
    assertions: list[dict[str, Any]] | None = None,
    remote_url: str | None = None,
) -> bytes:
    """`image` signed with the C2PA test certificate (an untrusted CA), with `assertions`."""
    folder = c2pa_dir()
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(
            alg=b"es256",
            sign_cert=(folder / "es256_certs.pem").read_bytes(),
            private_key=(folder / "es256_private.key").read_bytes(),
            ta_url=None,
        )
    )
    manifest = {
        "claim_generator_info": [{"name": "geoverdict-tests", "version": "1.0"}],
        "title": "test",
        "assertions": assertions if assertions is not None else [created()],
    }
    builder = c2pa.Builder(manifest)
    if remote_url:
        builder.set_no_embed()
        builder.set_remote_url(remote_url)
    out = io.BytesIO()
    builder.sign(signer, mime, io.BytesIO(image), out)
    return out.getvalue()
