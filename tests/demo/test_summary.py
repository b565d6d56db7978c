"""The demo's closing summary: each pass in a line, and this run's own accuracy."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from geoverdict.demo.archive import archive_baselines
from geoverdict.demo.summary import accuracy_summary, pass_summary
from geoverdict_common.paths import model_store_dir
from geoverdict_service.collector import Answer, Collected

DEMO_ARCHIVE = model_store_dir() / "geoverdict.mar"


def verdict(
    distance_km: float, mismatch: bool, top1: float, claim: tuple[float, float] = (0.0, 0.0)
) -> dict[str, Any]:
    check = {
        "claim_source": "event",
        "distance_km": distance_km,
        "location_mismatch": mismatch,
        "lat": claim[0],
        "lon": claim[1],
    }
    return {"location": {"confidence": {"top1": top1}}, "consistency": [check]}


def test_the_summary_gives_this_runs_accuracy_confidence_and_false_flags() -> None:
    verdicts = [verdict(10, False, 0.2), verdict(300, False, 0.4), verdict(5000, True, 0.6)]
    verdicts.append({"location": {"confidence": {"top1": 0.9}}, "consistency": []})  # no claim
    summary = accuracy_summary(verdicts)
    assert "on 3 photos" in summary
    assert "33.3% within 25 km, 33.3% within 200 km, 66.7% within 750 km" in summary
    assert "mean confidence of the best cell: 40.0%" in summary
    assert "flagged on 1 of 3 true claims (33.3%)" in summary


def test_the_summary_sets_the_model_beside_a_constant_guess_at_its_densest_point() -> None:
    rome, new_york = (41.9, 12.5), (40.7, -74.0)
    verdicts = [verdict(100, False, 0.1, rome), verdict(100, False, 0.1, new_york)]
    summary = accuracy_summary(verdicts, {"densest": [41.25, 16.25], "photos": 10})
    constant = summary.splitlines()[1]
    assert constant.startswith("always answering the densest point of its training photos")
    assert "(41.25, 16.25)" in constant
    assert "50.0% within 750 km, 50.0% within 2,500 km" in constant  # Rome's, not New York's
    assert "always answering" not in accuracy_summary(verdicts, {})  # an older archive


def test_a_pass_line_counts_what_was_sent_answered_and_cached() -> None:
    sent = {"a": 100.0, "b": 100.0, "c": 100.5}
    answers = {
        "a": Answer({"id": "a", "cache_hit": False}, 100.2),
        "b": Answer({"id": "b", "cache_hit": "exact"}, 101.0),
    }
    line = pass_summary("first pass", Collected(sent, answers))
    assert line.startswith("first pass: 3 events, 2 verdicts, 1 cache hits, 2.0 verdicts/s")
    assert line.endswith("latency p50 600 ms, max 1000 ms")


def test_the_baselines_are_read_from_the_archive_without_the_model(tmp_path: Path) -> None:
    archive = tmp_path / "m.mar"
    with zipfile.ZipFile(archive, "w") as mar:
        mar.writestr("metadata.json", json.dumps({"baselines": {"densest": [1.0, 2.0]}}))
    assert archive_baselines(archive) == {"densest": [1.0, 2.0]}
    (tmp_path / "old.mar").write_bytes(b"not a zip")
    assert archive_baselines(tmp_path / "old.mar") == {}
    if DEMO_ARCHIVE.is_file():
        assert set(archive_baselines(DEMO_ARCHIVE)) >= {"densest", "geodesic_median"}
