"""What the demo prints at its end: each pass's counts, throughput and latency, and this run's
own accuracy against the posts' claims."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

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


def accuracy_summary(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """This run's own accuracy against the posts' claims (the demo's claims are the photos'
    true positions), the model's mean confidence, and how often it flagged an honest post."""
    checked = [
        (v, check)
        for v in verdicts
        for check in v["consistency"]
        if check["claim_source"] == "event"
    ]
    if not checked:
        return "accuracy: no photo had a claimed location to compare with"
    distances = [check["distance_km"] for _, check in checked]
    within = ", ".join(
        f"{sum(d <= t for d in distances) / len(distances):.1%} within {t:,} km"
        for t in THRESHOLDS_KM
    )
    confidence = statistics.mean(v["location"]["confidence"]["top1"] for v, _ in checked)
    flagged = sum(check["location_mismatch"] for _, check in checked)
    return (
        f"accuracy on {len(checked)} photos the model never saw: {within}; "
        f"median error {statistics.median(distances):,.0f} km\n"
        f"mean confidence of the best cell: {confidence:.1%}\n"
        f"location_mismatch flagged on {flagged} of {len(checked)} true claims "
        f"({flagged / len(checked):.1%})"
    )
