"""What a validated manifest store says, read from the C2PA library's JSON (`Reader.json()`):
the active manifest's signer, claim generator, AI-generation action, capture place and time.

The store is the sender's data: every field is checked for its type and range, and anything
malformed reads as absent rather than raising."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from geoverdict_service.provenance.capture import exif_datetime, utc_offset

# IPTC digital source types that mean "made by a generative model" (the last path segment).
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
# Assertions that carry EXIF-style metadata: the C2PA EXIF assertion, and the CAWG / C2PA
# metadata assertions that replaced it in later versions of the specifications.
METADATA_LABELS = ("stds.exif", "cawg.metadata", "c2pa.metadata")
MAX_CODES = 32  # codes are the library's, but a hostile store can make it emit many
_MAX_TEXT = 200
# XMP GPS coordinate: "DDD,MM.mmk" or "DDD,MM,SSk" (k: N, S, E or W).
_XMP_GPS = re.compile(r"^\s*(\d{1,3}),(\d{1,2}(?:\.\d+)?)(?:,(\d{1,2}(?:\.\d+)?))?\s*([NSEW])\s*$")


def active_manifest(store: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest the store names as active, or None."""
    manifests = store.get("manifests")
    label = store.get("active_manifest")
    if not isinstance(manifests, dict) or not isinstance(label, str):
        return None
    manifest = manifests.get(label)
    return manifest if isinstance(manifest, dict) else None


def status_codes(store: dict[str, Any]) -> tuple[str, ...]:
    """The store's validation status codes (failures such as signingCredential.untrusted)."""
    entries = store.get("validation_status")
    if not isinstance(entries, list):
        return ()
    codes: list[str] = []
    for entry in entries:
        code = entry.get("code") if isinstance(entry, dict) else None
        if isinstance(code, str) and code not in codes:
            codes.append(code[:_MAX_TEXT])
    return tuple(codes[:MAX_CODES])


def signature(manifest: dict[str, Any]) -> tuple[str | None, str | None, datetime | None]:
    """(signer, issuer, signed_at): the certificate's common name (else its issuer), the
    issuer, and the trusted timestamp's time when the claim was timestamped."""
    info = manifest.get("signature_info")
    if not isinstance(info, dict):
        return None, None, None
    issuer = _text(info.get("issuer"))
    signer = _text(info.get("common_name")) or issuer
    return signer, issuer, _iso_datetime(info.get("time"))


def claim_generator(manifest: dict[str, Any]) -> str | None:
    """The software that made the claim: v1's `claim_generator`, else v2's first info entry."""
    generator = _text(manifest.get("claim_generator"))
    if generator:
        return generator
    infos = manifest.get("claim_generator_info")
    first = infos[0] if isinstance(infos, list) and infos else None
    if not isinstance(first, dict):
        return None
    name, version = _text(first.get("name")), _text(first.get("version"))
    if name and version:
        return f"{name}/{version}"[:_MAX_TEXT]
    return name


def ai_generated(manifest: dict[str, Any]) -> bool:
    """True when a `c2pa.created` action names a generative model as the digital source."""
    for data in _assertions(manifest, ("c2pa.actions",)):
        actions = data.get("actions")
        for action in actions if isinstance(actions, list) else ():
            if not isinstance(action, dict) or action.get("action") != "c2pa.created":
                continue
            source = action.get("digitalSourceType")
            if isinstance(source, str) and source.strip().rsplit("/", 1)[-1] in AI_SOURCE_TYPES:
                return True
    return False


def capture_location(manifest: dict[str, Any]) -> tuple[float, float] | None:
    """(lat, lon) from the first metadata assertion with a valid GPS position."""
    for data in _assertions(manifest, METADATA_LABELS):
        lat = _coordinate(data.get("exif:GPSLatitude"), data.get("exif:GPSLatitudeRef"), "NS")
        lon = _coordinate(data.get("exif:GPSLongitude"), data.get("exif:GPSLongitudeRef"), "EW")
        if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
            return lat, lon
    return None


def captured_at(manifest: dict[str, Any]) -> datetime | None:
    """exif:DateTimeOriginal from the first metadata assertion that has one (with its offset
    when the manifest gives one, else naive: local time at the camera)."""
    for data in _assertions(manifest, METADATA_LABELS):
        value = data.get("exif:DateTimeOriginal")
        when = _iso_datetime(value) or exif_datetime(value)
        if when is None:
            continue
        offset = utc_offset(data.get("exif:OffsetTimeOriginal"))
        if when.tzinfo is None and offset is not None:
            when = when.replace(tzinfo=offset)
        return when
    return None


def _assertions(manifest: dict[str, Any], labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The data of the manifest's assertions whose label is one of `labels` (any version or
    instance suffix: c2pa.actions.v2, stds.exif__1)."""
    assertions = manifest.get("assertions")
    found: list[dict[str, Any]] = []
    for assertion in assertions if isinstance(assertions, list) else ():
        if not isinstance(assertion, dict):
            continue
        label, data = assertion.get("label"), assertion.get("data")
        if isinstance(label, str) and isinstance(data, dict):
            base = label.split("__", 1)[0]
            if any(base == wanted or base.startswith(wanted + ".v") for wanted in labels):
                found.append(data)
    return found


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip()[:_MAX_TEXT] or None


def _coordinate(value: Any, ref: Any, hemispheres: str) -> float | None:
    """Degrees from XMP's "DDD,MM.mmk" / "DDD,MM,SSk" or a plain number (with a separate ref)."""
    if isinstance(value, str):
        match = _XMP_GPS.match(value)
        if match:
            degrees, minutes, seconds, hemisphere = match.groups()
            if hemisphere not in hemispheres:
                return None
            result = float(degrees) + float(minutes) / 60 + float(seconds or 0) / 3600
            return -result if hemisphere in "SW" else result
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if isinstance(ref, str) and ref.strip()[:1] in ("S", "W"):
        return -abs(float(value))
    return float(value)


def _iso_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
