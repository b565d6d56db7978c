"""What the demo prints at its end: each pass's counts, throughput and latency, and this run's
own accuracy against the posts' claims, beside a constant guess's."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from geoverdict_common.distances import haversine_km
from geoverdict_service.collector import Collected

THRESHOLDS_KM = (25, 200, 750, 2500)


def pass_summary(label: str, collected: Collected) -> str:
    """One pass in a line: events, verdicts, cache hits, verdicts/s, end-to-end latency."""
    latencies = sorted(collected.latencies_s) or [0.0]
    hits = sum(bool(v.get("cache_hit")) for v in collected.verdicts)
    return (
        f"{label}: {len(collected.sent_at)} events, {len(collected.answers)} verdicts, "
        f"{hits} cache hits, {collected.per_s:.1f} verdicts/s, "
        f"end-to-end latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )


def _within(distances: Sequence[float]) -> str:
    return ", ".join(
        f"{sum(d <= t for d in distances) / len(distances):.1%} within {t:,} km"
        for t in THRESHOLDS_KM
    )


def accuracy_summary(
    verdicts: Sequence[Mapping[str, Any]], baselines: Mapping[str, Any] | None = None
) -> str:
    """This run's own accuracy against the posts' claims (the demo's claims are the photos'
    true positions), the model's mean confidence, and how often it flagged an honest post; with
    the archive's `baselines` (metadata.json), what a constant guess at its training photos'
    densest point would have scored on the same claims."""
    checked = [
        (v, check)
        for v in verdicts
        for check in v["consistency"]
        if check["claim_source"] == "event"
    ]
    if not checked:
        return "accuracy: no photo had a claimed location to compare with"
    distances = [check["distance_km"] for _, check in checked]
    within = _within(distances)
    constant = ""
    if baselines and "densest" in baselines:
        lat, lon = (float(v) for v in baselines["densest"])
        guessed = [float(haversine_km(c["lat"], c["lon"], lat, lon)) for _, c in checked]
        constant = (
            f"\nalways answering the densest point of its training photos ({lat:.2f}, "
            f"{lon:.2f}) instead: {_within(guessed)}; median error "
            f"{statistics.median(guessed):,.0f} km"
        )
    confidence = statistics.mean(v["location"]["confidence"]["top1"] for v, _ in checked)
    flagged = sum(check["location_mismatch"] for _, check in checked)
    return (
        f"accuracy on {len(checked)} photos the model never saw: {within}; "
        f"median error {statistics.median(distances):,.0f} km{constant}\n"
        f"mean confidence of the best cell: {confidence:.1%}\n"
        f"location_mismatch flagged on {flagged} of {len(checked)} true claims "
        f"({flagged / len(checked):.1%})"
    )
