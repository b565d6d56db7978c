"""The near-duplicates benchmark: a smoke run on a few development photos writes the figures the
fingerprint's threshold is chosen from, and prints them as a table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import near_duplicates
from benchmarks.commands import main
from geoverdict_service.provenance import fingerprints

pytestmark = pytest.mark.shared_data


def test_a_smoke_run_reports_recall_false_matches_and_cost(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = shared_data / "im2gps3k-dev" / "images"
    argv = ["near-duplicates", "--limit", "6", "--images", str(images), "--out", str(tmp_path)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    result = json.loads((tmp_path / "near-duplicates.json").read_text())

    assert result["protocol"]["match_distance"] == fingerprints.MATCH_DISTANCE
    assert result["protocol"]["min_quality"] == fingerprints.MIN_QUALITY
    rows = {row["alteration"]: row for row in result["recall"]}
    assert set(rows) == set(near_duplicates.ALTERATIONS)
    for row in rows.values():
        assert row["photos"] == 6 and 0 <= row["recall_pct"] <= 100
        assert set(row["recall_within_pct"]) == {str(t) for t in near_duplicates.THRESHOLDS}
    assert rows["jpeg_q85"]["recall_pct"] == 100  # a re-encode is always found
    assert rows["crop_5pct"]["target_pct"] == 80 and rows["screenshot"]["target_pct"] is None

    distinct = result["false_matches"]
    assert distinct["pairs"] == 15 and distinct["matches"] == 0
    assert distinct["closest"][0]["distance"] == distinct["min_distance"]
    assert {"a", "b", "same_photographer"} <= set(distinct["closest"][0])
    assert result["cpu_ms_per_fingerprint"]["photos"] == 6
    assert result["cpu_ms_per_fingerprint"]["median_ms"] > 0

    assert "crop_5pct" in table and "15 pairs" in table


def test_min_distances_is_the_smallest_over_both_hash_sets() -> None:
    rng = np.random.default_rng(0)
    hashes = [rng.bytes(32) for _ in range(5)]
    flipped = bytes([hashes[0][0] ^ 0b111]) + hashes[0][1:]  # 3 bits from hashes[0]
    queries = near_duplicates.words([[hashes[1], flipped], [hashes[2]]])
    indexed = near_duplicates.words([[hashes[0]], [hashes[3], hashes[4]]])
    got = near_duplicates.min_distances(queries, indexed)
    want = [
        [
            min(fingerprints.distance(q, h) for q in qs for h in hs)
            for hs in ([hashes[0]], hashes[3:])
        ]
        for qs in ([hashes[1], flipped], [hashes[2]])
    ]
    assert got.tolist() == want
    assert got[0, 0] == 3
