"""Follow the verdict topic and show verdicts as they arrive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord


def records(consumer: KafkaConsumer) -> Iterator[tuple[ConsumerRecord, dict[str, Any]]]:
    """Each record of a subscribed consumer with its decoded JSON object, until the consumer's
    timeout; a value that is no JSON object is passed over."""
    for record in consumer:
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(value, dict):
            yield record, value


def verdicts(consumer: KafkaConsumer, max_count: int | None = None) -> Iterator[dict[str, Any]]:
    """Decoded verdicts from a subscribed consumer, until `max_count` or its timeout."""
    for count, (_, verdict) in enumerate(records(consumer), start=1):
        yield verdict
        if max_count is not None and count >= max_count:
            return


# "MISMATCH 20015km" (half the Earth's circumference) is the widest claim cell: 16 characters.
HEADER = (
    f"{'post':<26} {'best guess':<34} {'p':>5} {'r50 km':>7} {'scene':<8} {'claim':<16} "
    f"{'cache':<5} provenance"
)


def provenance_text(provenance: dict[str, Any] | None) -> str:
    """What an analyst acts on, in words: seen before (where, when), C2PA, capture time."""
    if not provenance:
        return "-"
    parts = []
    near = provenance.get("near_duplicate")
    if near:
        parts.append(
            f"seen {near['times_seen']}x since {near['first_seen'][:10]} (event {near['event_id']})"
        )
        if provenance.get("recycled_claim"):
            far = max(
                (c["distance_km"] or 0 for c in provenance.get("earlier_claims", [])), default=0
            )
            parts.append(f"RECYCLED: claimed {far:,.0f} km away before")
    elif provenance.get("index") == "unavailable":
        parts.append("index unavailable")
    c2pa = provenance.get("c2pa") or {}
    if c2pa.get("state", "absent") != "absent":
        signer = f" by {c2pa['signer']}" if c2pa.get("signer") else ""
        parts.append(
            f"c2pa {c2pa['state']}{signer}" + (" AI-GENERATED" if c2pa.get("ai_generated") else "")
        )
    capture = provenance.get("capture")
    if capture:
        when = capture.get("before_post")
        taken = (
            f"taken {when} before" if when and capture["check"] == "plausible" else capture["check"]
        )
        parts.append(f"{taken} ({capture['captured_at'][:10]})")
    return "; ".join(parts) or "-"


def format_row(verdict: dict[str, Any]) -> str:
    """One readable line per verdict."""
    location = verdict["location"]
    best = location["best_guess"]
    place = best.get("place") or {}
    where = f"{place.get('name', '?')}, {place.get('country_code', '?')}" if place else "?"
    where = f"{where} ({best['lat']:.2f},{best['lon']:.2f})"
    scene = (verdict.get("scene") or {}).get("s3", {}).get("label", "-")
    claims = verdict.get("consistency") or []
    claim = "-"
    if claims:
        first = claims[0]
        flag = "MISMATCH" if first["location_mismatch"] else "ok"
        claim = f"{flag} {first['distance_km']:.0f}km"
    return (
        f"{verdict['post_id'][:26]:<26} {where[:34]:<34} {best['probability']:>5.2f} "
        f"{location['confidence']['radius_50_km']:>7.0f} {scene:<8} {claim:<16} "
        f"{_cache(verdict.get('cache_hit')):<5} {provenance_text(verdict.get('provenance'))}"
    )


def _cache(hit: Any) -> str:
    """false / "exact" / "near_duplicate" (and the boolean of older verdicts) in one word."""
    if hit == "near_duplicate":
        return "near"
    return "hit" if hit else "miss"
