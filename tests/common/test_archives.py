"""The model store's manifest: TorchServe loads only archives whose SHA-256 it lists."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from geoverdict_common.archives import MANIFEST, problems, read_manifest, record


def test_recorded_archives_pass_and_sha256sum_agrees(tmp_path: Path) -> None:
    archive = tmp_path / "model.mar"
    archive.write_bytes(b"PK archive bytes")
    digest = record(archive)
    assert digest == hashlib.sha256(b"PK archive bytes").hexdigest()
    assert read_manifest(tmp_path) == {"model.mar": digest}
    assert problems(tmp_path, ["model.mar"]) == []
    check = subprocess.run(["sha256sum", "-c", MANIFEST], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0


def test_an_unlisted_a_changed_and_a_missing_archive_are_each_refused(tmp_path: Path) -> None:
    listed = tmp_path / "listed.mar"
    listed.write_bytes(b"v1")
    record(listed)
    listed.write_bytes(b"v1 with a different handler")
    (tmp_path / "stranger.mar").write_bytes(b"unknown")
    found = problems(tmp_path, ["listed.mar", "stranger.mar", "gone.mar"])
    assert found == [
        "listed.mar: SHA-256 differs from SHA256SUMS (changed or corrupted)",
        "stranger.mar: not listed in SHA256SUMS",
        "gone.mar: not in the model store",
    ]


def test_recording_again_updates_one_line_and_keeps_the_others(tmp_path: Path) -> None:
    for name in ("a.mar", "b.mar"):
        (tmp_path / name).write_bytes(name.encode())
        record(tmp_path / name)
    (tmp_path / "a.mar").write_bytes(b"new a")
    record(tmp_path / "a.mar")
    assert problems(tmp_path, ["a.mar", "b.mar"]) == []
    assert len((tmp_path / MANIFEST).read_text().splitlines()) == 2
