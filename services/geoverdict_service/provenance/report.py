"""A verdict's `provenance` object, from what the consumer learned of the photo: its fingerprint,
its match in the near-duplicate index, its Content Credentials and its capture time, read
against the event's claim and time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from geoverdict_common.contract_types import (
    CaptureLocation,
    ContentCredentials,
    EarlierClaim,
    NearDuplicate,
    Provenance,
)
from geoverdict_common.distances import haversine_km
from geoverdict_service.events import Claim
from geoverdict_service.geo import coarsen
from geoverdict_service.provenance.capture import CaptureTime, capture_report
from geoverdict_service.provenance.credentials import Credentials
from geoverdict_service.provenance.fingerprints import Fingerprint
from geoverdict_service.provenance.index import Match

# Two posts of one photo claiming places farther apart than a metropolitan region: an old photo
# of one place presented as another. Nearer claims (a city's centre, then a district) are the
# same place told twice. docs/verdicts.md, "Recycled claims".
RECYCLED_CLAIM_KM = 200.0

IndexState = Literal["ok", "unavailable", "disabled", "unusable"]


@dataclass(frozen=True)
class ProvenancePolicy:
    """How provenance is reported (from ProvenanceSettings and the privacy floor)."""

    recycled_claim_km: float = RECYCLED_CLAIM_KM
    min_precision_km: float = 0.0


def _km(claim: Claim | None, lat: float, lon: float, floor_km: float) -> float | None:
    """Distance from the (floored) claim, no finer than the floor; None without a claim."""
    if claim is None:
        return None
    distance = float(haversine_km(claim.lat, claim.lon, lat, lon))
    if floor_km <= 0:
        return round(distance, 3)
    return round(round(distance / floor_km) * floor_km, 3)


def credentials_report(
    credentials: Credentials, claim: Claim | None, floor_km: float
) -> ContentCredentials:
    """`provenance.c2pa`: the manifest's state and what it says, its place no finer than the
    floor and measured from the claim."""
    location: CaptureLocation | None = None
    if credentials.capture_location is not None:
        lat, lon = coarsen(*credentials.capture_location, floor_km)
        location = {"lat": lat, "lon": lon, "distance_km": _km(claim, lat, lon, floor_km)}
    return {
        "state": credentials.state,
        "codes": list(credentials.codes),
        "reason": credentials.reason,
        "signer": credentials.signer,
        "issuer": credentials.issuer,
        "claim_generator": credentials.claim_generator,
        "signed_at": credentials.signed_at.isoformat() if credentials.signed_at else None,
        "ai_generated": credentials.ai_generated,
        "capture_location": location,
    }


def provenance_report(
    *,
    fingerprint: Fingerprint | None,
    index: IndexState,
    match: Match | None,
    credentials: Credentials,
    exif_capture: CaptureTime | None,
    claim: Claim | None,
    posted_at: datetime | None,
    policy: ProvenancePolicy,
) -> Provenance:
    """The verdict's provenance. `claim` is the event's claim, already as coarse as the floor."""
    floor = policy.min_precision_km
    near: NearDuplicate | None = None
    earlier: list[EarlierClaim] = []
    if match is not None:
        near = {
            "event_id": match.first.event_id,
            "post_id": match.first.post_id,
            "source": match.first.source,
            "first_seen": match.first.seen_at.isoformat(),
            "times_seen": match.times_seen,
            "distance": match.distance,
        }
        for lat, lon, seen_at in match.claims:
            earlier.append(
                {
                    "lat": lat,
                    "lon": lon,
                    "seen_at": seen_at.isoformat(),
                    "distance_km": _km(claim, lat, lon, floor),
                }
            )
    recycled = any(
        c["distance_km"] is not None and c["distance_km"] > policy.recycled_claim_km
        for c in earlier
    )
    capture = exif_capture
    signed = credentials.captured_at
    if capture is None and signed is not None:
        known = signed.tzinfo is not None  # a manifest's local time without its offset: as EXIF's
        capture = CaptureTime(signed if known else signed.replace(tzinfo=UTC), "c2pa", known)
    return {
        "index": index,
        "fingerprint": (
            {"pdq": fingerprint.hashes[0].hex(), "quality": fingerprint.quality}
            if fingerprint is not None
            else None
        ),
        "near_duplicate": near,
        "earlier_claims": earlier,
        "recycled_claim": recycled,
        "recycled_claim_km": policy.recycled_claim_km,
        "c2pa": credentials_report(credentials, claim, floor),
        "capture": capture_report(capture, posted_at),
    }
