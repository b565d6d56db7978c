"""`geoverdict demo` from start to finish, on the real stack (integration)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from geoverdict_service.geo import coarsen
from tests import photos
from tests.stack_fixtures import FIXTURE_HANDLER, build_archive

pytestmark = pytest.mark.integration


def test_demo_answers_every_photo_twice_and_leaves_nothing_running(tmp_path: Path) -> None:
    # The torch-free fixture archive stands in for the model: this checks the plumbing;
    # tests/training checks the real model's archive.
    archive = build_archive(FIXTURE_HANDLER, "fixture", tmp_path / "store")
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoverdict",
            "demo",
            "--model",
            str(archive),
            "--out",
            str(out),
            "--limit",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
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


def test_with_your_photos_no_verdict_is_finer_than_the_privacy_floor(tmp_path: Path) -> None:
    # Photos whose GPS EXIF (to the metre) becomes the post's claim, under the default settings.
    folder = tmp_path / "photos"
    folder.mkdir()
    for k, (lat, lon) in enumerate([(48.858089, 2.294571), (-33.856784, 151.215297)]):
        ref_lat, ref_lon = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
        gps = {1: ref_lat, 2: _dms(abs(lat)), 3: ref_lon, 4: _dms(abs(lon))}
        (folder / f"gps-{k}.jpg").write_bytes(photos.gps_photo(gps))
    archive = build_archive(FIXTURE_HANDLER, "fixture", tmp_path / "store")
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoverdict",
            "demo",
            "--model",
            str(archive),
            "--images",
            str(folder),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    floor = 5.0
    checks = [check for v in verdicts for check in v["consistency"]]
    assert len(checks) == len(verdicts)  # every photo claimed its EXIF position
    for verdict in verdicts:
        location = verdict["location"]
        for point in [*location["cells"], location["best_guess"], *verdict["consistency"]]:
            assert coarsen(point["lat"], point["lon"], floor) == (point["lat"], point["lon"])
        assert location["precision_km"] >= floor
    for check in checks:
        assert check["distance_km"] % floor == 0
        assert (check["lat"], check["lon"]) != (48.858089, 2.294571)


def _dms(degrees: float) -> tuple[float, float, float]:
    minutes, seconds = divmod(degrees * 3600, 60)
    whole, minutes = divmod(minutes, 60)
    return (whole, minutes, round(seconds, 4))


@pytest.mark.slow
def test_demo_on_triton_answers_every_photo_twice_with_the_demo_model(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoverdict",
            "demo",
            "--model-server",
            "triton",
            "--out",
            str(out),
            "--limit",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "starting Kafka, Redis and Triton" in result.stdout
    verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    (version,) = {v["model_version"] for v in verdicts}  # one model answered them all
    assert len(verdicts) == 16 and version.startswith("geoverdict-")
    assert [v["cache_hit"] for v in verdicts] == [False] * 8 + ["exact"] * 8
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers
