"""The repost-predictions benchmark: a smoke run answers a few photos and their found copies and
says how far each copy's best guess lies from the original's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.commands import main
from benchmarks.near_duplicates import ALTERATIONS

pytestmark = pytest.mark.shared_data


def test_a_smoke_run_compares_each_found_copy_with_its_original(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = shared_data / "im2gps3k-dev" / "images"
    argv = ["repost-predictions", "--photos", "2", "--images", str(images), "--out", str(tmp_path)]
    assert main(argv) == 0
    result = json.loads((tmp_path / "repost-predictions.json").read_text())
    rows = {row["alteration"]: row for row in result["rows"]}
    assert set(rows) == set(ALTERATIONS)
    assert rows["png"]["found"] == 2
    assert rows["png"]["same_best_guess_pct"] == 100  # the same pixels: the same answer
    assert rows["png"]["median_km_apart"] == 0
    assert result["original_error_km"]["median"] > 0
    assert "model's own error" in capsys.readouterr().out
