"""The demo's closing summary: each pass in a line, and this run's own accuracy."""

from __future__ import annotations

from typing import Any

from geoverdict.demo.summary import accuracy_summary, pass_summary
from geoverdict_service.collector import Answer, Collected


def verdict(distance_km: float, mismatch: bool, top1: float) -> dict[str, Any]:
    return {
        "location": {"confidence": {"top1": top1}},
        "consistency": [
            {"claim_source": "event", "distance_km": distance_km, "location_mismatch": mismatch}
        ],
    }


def test_the_summary_gives_this_runs_accuracy_confidence_and_false_flags() -> None:
    verdicts = [verdict(10, False, 0.2), verdict(300, False, 0.4), verdict(5000, True, 0.6)]
    verdicts.append({"location": {"confidence": {"top1": 0.9}}, "consistency": []})  # no claim
    summary = accuracy_summary(verdicts)
    assert "on 3 photos" in summary
    assert "33.3% within 25 km, 33.3% within 200 km, 66.7% within 750 km" in summary
    assert "mean confidence of the best cell: 40.0%" in summary
    assert "flagged on 1 of 3 true claims (33.3%)" in summary


def test_a_pass_line_counts_what_was_sent_answered_and_cached() -> None:
    sent = {"a": 100.0, "b": 100.0, "c": 100.5}
    answers = {
        "a": Answer({"id": "a", "cache_hit": False}, 100.2),
        "b": Answer({"id": "b", "cache_hit": True}, 101.0),
    }
    line = pass_summary("first pass", Collected(sent, answers))
    assert line.startswith("first pass: 3 events, 2 verdicts, 1 cache hits, 2.0 verdicts/s")
    assert line.endswith("latency p50 600 ms, max 1000 ms")
