"""TorchServe's entrypoint: archives checked before the start, the inference key alone shared."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from geoverdict_common.archives import record
from geoverdict_modelserver.torchserve_entrypoint import main

# Stands in for TorchServe: writes all three keys into its working directory, then exits.
FAKE_TORCHSERVE = (
    "import json, time; json.dump({'inference': {'key': 'inf-1'}, 'management': {'key': 'mgmt'},"
    " 'API': {'key': 'api'}}, open('key_file.json', 'w')); time.sleep(0.8)"
)


def test_only_the_inference_key_is_published_for_the_consumer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    (store / "m.mar").write_bytes(b"archive")
    record(store / "m.mar")
    shared = tmp_path / "shared" / "key_file.json"
    status = main(
        [
            "--model-store",
            str(store),
            "--load",
            "all",
            "--inference-key",
            str(shared),
            "--",
            sys.executable,
            "-c",
            FAKE_TORCHSERVE,
        ]
    )
    assert status == 0
    assert json.loads(shared.read_text()) == {"inference": {"key": "inf-1"}}
    assert stat.S_IMODE(shared.stat().st_mode) == 0o444  # readable by the consumer's user


def test_a_tampered_archive_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "m.mar").write_bytes(b"archive")
    record(store / "m.mar")
    (store / "m.mar").write_bytes(b"archive with another handler.py")
    started = tmp_path / "started"
    status = main(
        [
            "--model-store",
            str(store),
            "--load",
            "geoverdict=m.mar",
            "--inference-key",
            str(tmp_path / "k.json"),
            "--",
            sys.executable,
            "-c",
            f"open({str(started)!r}, 'w')",
        ]
    )
    assert status == 3
    assert not started.exists()  # TorchServe never ran
    assert "m.mar: SHA-256 differs" in capsys.readouterr().err
