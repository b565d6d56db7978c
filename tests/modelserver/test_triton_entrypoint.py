"""Triton's entrypoint: the repository from the model store, the secret settled once and shared
as a key file, tritonserver started with every API but health restricted to it."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from geoverdict_common.archives import record
from geoverdict_modelserver.triton_entrypoint import RESTRICTED, main, settle_secret


def test_the_secret_is_made_once_readable_for_the_consumer_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "key_file.json"
    secret = settle_secret(path)
    assert len(secret) >= 32
    assert json.loads(path.read_text()) == {"inference": {"key": secret}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert settle_secret(path) == secret


def test_tritonserver_is_started_with_the_repository_and_the_restriction(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "geoverdict.mar").write_bytes(b"archive")
    record(store / "geoverdict.mar")
    key = tmp_path / "key_file.json"
    argv = [
        "--model-store",
        str(store),
        "--repository",
        str(tmp_path / "repo"),
        "--inference-key",
        str(key),
        "--",
        "/bin/echo",
        "tritonserver",
    ]
    code = f"import sys; from geoverdict_modelserver.triton_entrypoint import main; main({argv!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    words = out.stdout.split()
    secret = json.loads(key.read_text())["inference"]["key"]
    assert words[:3] == ["tritonserver", "--model-repository", str(tmp_path / "repo")]
    assert "--load-model=geoverdict" in words and "explicit" in words
    restricted = next(w for w in words if w.startswith("--http-restricted-api="))
    assert restricted == f"--http-restricted-api={','.join(RESTRICTED)}:authorization=Bearer"
    assert words[words.index(restricted) + 1] == secret
    assert "health" not in RESTRICTED
    assert (tmp_path / "repo" / "geoverdict" / "1" / "model.mar").is_symlink()


def test_an_archive_the_store_does_not_list_refuses_the_start(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "stray.mar").write_bytes(b"?")
    status = main(
        [
            "--model-store",
            str(store),
            "--repository",
            str(tmp_path / "repo"),
            "--inference-key",
            str(tmp_path / "k.json"),
            "--",
            "/bin/false",
        ]
    )
    assert status == 3
    assert not (tmp_path / "k.json").exists()
