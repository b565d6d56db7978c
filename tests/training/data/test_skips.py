"""The skip tally's one summary line."""

from __future__ import annotations

from geoverdict_training.data.skips import Skips


def test_summary_counts_rows_and_reasons() -> None:
    skips = Skips("manifest dev.csv")
    skips.seen = 10
    skips.skip("missing file", 2)
    skips.skip("bad coordinates")
    assert skips.kept == 7
    assert skips.summary() == (
        "manifest dev.csv: 10 rows, 7 kept, 3 skipped (1 bad coordinates, 2 missing file)"
    )


def test_summary_without_skips_has_no_reasons() -> None:
    skips = Skips("photos")
    skips.seen = 3
    assert skips.summary() == "photos: 3 rows, 3 kept, 0 skipped"
