"""What a manifest store's JSON says, read defensively: hostile values read as absent."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from geoverdict_service.provenance import manifest_store


def _manifest(*assertions: dict[str, Any]) -> dict[str, Any]:
    return {"assertions": list(assertions)}


def _exif(**fields: Any) -> dict[str, Any]:
    return {"label": "stds.exif", "data": {f"exif:{k}": v for k, v in fields.items()}}


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        ("39,21.102N", "74,26.5737W", (39.3517, -74.442895)),
        ("33,51,54S", "151,12,36E", (-33.865, 151.21)),
        (48.85, 2.35, (48.85, 2.35)),
        ("95,0.0N", "10,0.0E", None),  # out of range
        ("39,21.102E", "74,26.5737W", None),  # a longitude hemisphere on a latitude
        ("nan", "1.0", None),
        ([1], {"a": 1}, None),
    ],
)
def test_capture_location(lat: Any, lon: Any, expected: tuple[float, float] | None) -> None:
    found = manifest_store.capture_location(_manifest(_exif(GPSLatitude=lat, GPSLongitude=lon)))
    assert found == (pytest.approx(expected) if expected else None)


def test_a_cawg_metadata_assertion_with_exif_time_and_offset() -> None:
    manifest = _manifest(
        {
            "label": "cawg.metadata",
            "data": {
                "exif:DateTimeOriginal": "2018:07:01 09:30:00",
                "exif:OffsetTimeOriginal": "+02:00",
            },
        }
    )
    assert manifest_store.captured_at(manifest) == datetime(
        2018, 7, 1, 9, 30, tzinfo=timezone(timedelta(hours=2))
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (" http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia", True),
        (
            "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia",
            True,
        ),
        ("http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia", False),
        ("http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture", False),
        (None, False),
    ],
)
def test_ai_generated(source: str | None, expected: bool) -> None:
    action = {"action": "c2pa.created", "digitalSourceType": source}
    manifest = _manifest({"label": "c2pa.actions.v2", "data": {"actions": [action]}})
    assert manifest_store.ai_generated(manifest) is expected


def test_an_edit_by_a_model_is_not_a_creation() -> None:
    action = {
        "action": "c2pa.edited",
        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
    }
    manifest = _manifest({"label": "c2pa.actions", "data": {"actions": [action]}})
    assert not manifest_store.ai_generated(manifest)


def test_malformed_stores_read_as_nothing() -> None:
    assert manifest_store.active_manifest({"active_manifest": 3, "manifests": []}) is None
    assert manifest_store.status_codes({"validation_status": [1, {"code": None}]}) == ()
    assert manifest_store.signature({"signature_info": "x"}) == (None, None, None)
    assert manifest_store.claim_generator({"claim_generator_info": [7]}) is None
    assert manifest_store.capture_location({"assertions": "stds.exif"}) is None
