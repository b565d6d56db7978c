"""Content Credentials: signed by the tests with the C2PA test CA, tampered with, fuzzed, and
validated in a worker process that may hang or crash without harming the reader."""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from geoverdict_service.provenance.credential_worker import Check
from geoverdict_service.provenance.credentials import (
    ABSENT,
    CredentialReader,
    Credentials,
    c2pa_validator,
)
from tests.service.provenance.c2pa_signing import (
    AI_SOURCE,
    c2pa_dir,
    created,
    photo,
    sign,
)

TIMEOUT_S = 2.0
HERE = __name__


def flaky_validator(settings: str) -> Check:
    """The real check, except that it hangs on b"HANG" and crashes the process on b"CRASH"."""
    real = c2pa_validator(settings)

    def check(image: bytes, mime: str) -> dict[str, Any]:
        if image.endswith(b"HANG"):
            time.sleep(60)
        if image.endswith(b"CRASH"):
            os.abort()
        return real(image, mime)

    return check


def refusing_validator(settings: str) -> Check:
    """A check that says it was called: the reader must not have called it."""

    def check(image: bytes, mime: str) -> dict[str, Any]:
        return {"error": "called"}

    return check


@pytest.fixture(scope="module")
def reader() -> Iterator[CredentialReader]:
    c2pa_dir()
    with CredentialReader(timeout_s=TIMEOUT_S, validator=f"{HERE}:flaky_validator") as reader:
        yield reader


def test_an_image_signed_by_the_test_ca_is_untrusted_with_its_signer(
    reader: CredentialReader,
) -> None:
    credentials = reader.read(sign(photo(), "image/jpeg"))
    assert credentials.state == "untrusted"
    assert credentials.codes == ("signingCredential.untrusted",)
    assert credentials.signer == "C2PA Signer"
    assert credentials.issuer == "C2PA Test Signing Cert"
    assert credentials.claim_generator == "geoverdict-tests/1.0"
    assert not credentials.ai_generated
    assert credentials.reason is None


def test_with_the_test_ca_as_trust_anchor_it_is_valid() -> None:
    folder = c2pa_dir()
    with CredentialReader(trust_anchors=folder / "es256_certs.pem") as trusting:
        credentials = trusting.read(sign(photo(), "image/jpeg"))
    assert (credentials.state, credentials.codes) == ("valid", ())


def test_pixels_changed_after_signing_make_it_invalid(reader: CredentialReader) -> None:
    signed = bytearray(sign(photo(), "image/jpeg"))
    signed[-200] ^= 0xFF  # inside the entropy-coded pixels, after the manifest
    credentials = reader.read(bytes(signed))
    assert credentials.state == "invalid"
    assert "assertion.dataHash.mismatch" in credentials.codes
    assert credentials.reason and "assertion.dataHash.mismatch" in credentials.reason
    assert credentials.signer == "C2PA Signer"  # what the manifest claims is still reported


def test_a_generative_model_credential_is_ai_generated(reader: CredentialReader) -> None:
    credentials = reader.read(sign(photo(), "image/jpeg", [created(AI_SOURCE)]))
    assert credentials.state == "untrusted"
    assert credentials.ai_generated


def test_a_capture_location_and_time_in_the_manifest(reader: CredentialReader) -> None:
    exif = {
        "label": "stds.exif",
        "data": {
            "@context": {"exif": "http://ns.adobe.com/exif/1.0/"},
            "exif:GPSLatitude": "39,21.102N",
            "exif:GPSLongitude": "74,26.5737W",
            "exif:DateTimeOriginal": "2019-09-22T18:22:57Z",
        },
    }
    credentials = reader.read(sign(photo(), "image/jpeg", [created(), exif]))
    assert credentials.capture_location == pytest.approx((39.3517, -74.442895))
    assert credentials.captured_at == datetime(2019, 9, 22, 18, 22, 57, tzinfo=UTC)


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("WEBP", "image/webp")])
def test_png_and_webp_credentials(reader: CredentialReader, fmt: str, mime: str) -> None:
    credentials = reader.read(sign(photo(fmt), mime, [created(AI_SOURCE)]))
    assert (credentials.state, credentials.ai_generated) == ("untrusted", True)


def test_the_shared_samples(reader: CredentialReader) -> None:
    folder = c2pa_dir()
    assert reader.read((folder / "A.jpg").read_bytes()) == ABSENT
    assert reader.read((folder / "unsigned-sample1.webp").read_bytes()) == ABSENT
    sample = reader.read((folder / "C.jpg").read_bytes())
    assert (sample.state, sample.signer) == ("untrusted", "C2PA Signer")
    assert sample.claim_generator == "make_test_images/0.26.0 c2pa-rs/0.26.0"
    assert sample.signed_at == datetime(2023, 9, 29, 17, 40, 14, tzinfo=UTC)
    assert not sample.ai_generated  # algorithmicMedia (a gradient), not a trained model
    cawg = reader.read((folder / "C_with_CAWG_data.jpg").read_bytes())
    assert cawg.state == "untrusted"
    assert "cawg.x509.credential.untrusted" in cawg.codes


def test_a_remote_manifest_is_never_fetched(reader: CredentialReader) -> None:
    credentials = reader.read(sign(photo(), "image/jpeg", remote_url="http://127.0.0.1:9/m"))
    assert (credentials.state, credentials.reason) == ("invalid", "remote manifest not fetched")


def test_a_manifest_over_the_size_limit_is_refused_unparsed() -> None:
    c2pa_dir()
    signed = sign(photo(), "image/jpeg")
    with CredentialReader(max_manifest_bytes=1000, validator=f"{HERE}:refusing_validator") as small:
        credentials = small.read(signed)
    assert credentials.state == "invalid"
    assert credentials.reason and "over the limit of 1000" in credentials.reason


def test_a_hanging_validation_times_out_and_the_next_read_works(
    reader: CredentialReader,
) -> None:
    signed = sign(photo(), "image/jpeg")
    started = time.monotonic()
    credentials = reader.read(signed + b"HANG")
    assert time.monotonic() - started < TIMEOUT_S + 1.0
    assert credentials.state == "invalid"
    assert credentials.reason == f"validation timed out after {TIMEOUT_S:g} s"
    assert reader.read(signed).state == "untrusted"


def test_a_crashing_validator_is_replaced(reader: CredentialReader) -> None:
    signed = sign(photo(), "image/jpeg")
    credentials = reader.read(signed + b"CRASH")
    assert credentials.state == "invalid"
    assert credentials.reason and credentials.reason.startswith("validator crashed")
    assert reader.read(signed).state == "untrusted"


def _manifest_spans(image: bytes) -> list[tuple[int, int]]:
    """(start, end) of the manifest bytes: JPEG APP11 payloads, PNG caBX / WebP C2PA data."""
    spans = []
    if image[:2] == b"\xff\xd8":
        i = 2
        while image[i + 1] != 0xDA:
            length = struct.unpack(">H", image[i + 2 : i + 4])[0]
            if image[i + 1] == 0xEB:
                spans.append((i + 4 + 8, i + 2 + length))  # after CI, En, Z
            i += 2 + length
    elif image[:4] == b"RIFF":
        at = image.index(b"C2PA")
        spans.append((at + 8, at + 8 + struct.unpack("<I", image[at + 4 : at + 8])[0]))
    else:
        at = image.index(b"caBX")
        spans.append((at + 4, at + 4 + struct.unpack(">I", image[at - 4 : at])[0]))
    return spans


def _mutate(image: bytes, rng: random.Random) -> bytes:
    start, end = rng.choice(_manifest_spans(image))
    data = bytearray(image)
    how = rng.choice(["flip", "random", "truncate"])
    if how == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    elif how == "random":
        at = rng.randrange(start, end)
        run = min(rng.randint(1, 256), end - at)
        data[at : at + run] = rng.randbytes(run)
    else:  # zeros from a point on: the box's declared lengths now run past its content
        at = rng.randrange(start, end)
        data[at:end] = bytes(end - at)
    return bytes(data)


@pytest.mark.parametrize(
    ("fmt", "mime", "seeds"),
    [("JPEG", "image/jpeg", 60), ("PNG", "image/png", 20), ("WEBP", "image/webp", 20)],
)
def test_fuzzed_manifests_never_raise_and_are_never_trusted(
    reader: CredentialReader, fmt: str, mime: str, seeds: int
) -> None:
    signed = sign(photo(fmt), mime, [created(AI_SOURCE)])
    states: list[str] = []
    for seed in range(seeds):
        started = time.monotonic()
        credentials = reader.read(_mutate(signed, random.Random(seed)))
        assert time.monotonic() - started < TIMEOUT_S + 1.0
        # untrusted only where the change hit bytes nothing hashes (the signature's padding)
        assert credentials.state in ("invalid", "absent", "untrusted"), seed
        if credentials.state == "invalid":
            assert credentials.reason
        states.append(credentials.state)
    assert states.count("invalid") >= seeds * 0.8, states


def test_credentials_survive_json() -> None:
    credentials = Credentials(
        "untrusted",
        codes=("signingCredential.untrusted",),
        signer="C2PA Signer",
        capture_location=(39.35, -74.44),
        captured_at=datetime(2019, 9, 22, 18, 22, 57),
        signed_at=datetime(2023, 9, 29, 17, 40, 14, tzinfo=UTC),
    )
    assert Credentials.from_json(credentials.to_json()) == credentials
    with pytest.raises(ValueError):
        Credentials.from_json({"state": "trusted-by-me"})
