"""`geoverdict demo` from start to finish, on the real stack (integration)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.stack_fixtures import FIXTURE_HANDLER, build_archive

pytestmark = pytest.mark.integration


def test_demo_answers_every_photo_twice_and_leaves_nothing_running(tmp_path: Path) -> None:
    # The torch-free fixture archive stands in for the model: this checks the plumbing;
    # tests/training checks the real model's archive.
    archive = build_archive(FIXTURE_HANDLER, "fixture", tmp_path / "store")
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "geoverdict", "demo", "--model", str(archive),
         "--out", str(out), "--limit", "12"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    photos = len(verdicts) // 2
    assert photos >= 6 and len(verdicts) == 2 * photos
    assert not any(v["cache_hit"] for v in verdicts[:photos])
    assert all(v["cache_hit"] for v in verdicts[photos:])
    page = (out / "verdicts.html").read_text()
    assert page.count("<tr>") == photos + 1 and "<svg" in page
    assert "src=" not in page and "href=" not in page  # offline: nothing fetched from the web
    assert "dead letters: 0" in result.stdout
    # The fixture archive does not say how it was trained: no development photo, no claim.
    assert "accuracy: no photo had a claimed location" in result.stdout
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers
