"""`geoverdict stack up --gpus N`: TorchServe gets the GPU serving entries for its models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geoverdict import cli
from geoverdict_modelserver.torchserve_gpu import GPU_SERVING
from geoverdict_stack.stack import Stack


class _StartedError(Exception):
    """Raised instead of starting servers."""


def _properties_at_up(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, str]:
    seen: dict[str, str] = {}

    def up(stack: Stack) -> None:
        seen.update(stack.torchserve.properties())
        raise _StartedError

    monkeypatch.setattr(Stack, "up", up)
    with pytest.raises(_StartedError):
        cli.main(argv)
    return seen


def test_up_with_gpus_serves_the_models_with_the_gpu_batching(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    argv = [
        "stack",
        "up",
        "--run-dir",
        str(tmp_path),
        "--free-ports",
        "--services",
        "torchserve",
        "--model",
        "geoverdict=demo.mar",
    ]
    properties = _properties_at_up(monkeypatch, [*argv, "--gpus", "2"])
    assert properties["number_of_gpu"] == "2"
    snapshot = json.loads(properties["model_snapshot"])
    (entry,) = snapshot["models"]["geoverdict"].values()
    assert entry["marName"] == "demo.mar" and entry["batchSize"] == GPU_SERVING.batch_size
    assert entry["minWorkers"] == 2 * GPU_SERVING.min_workers
    assert "model_snapshot" not in _properties_at_up(monkeypatch, argv)


def test_up_with_gpus_and_no_model_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Stack, "up", lambda stack: pytest.fail("started without a model"))
    argv = ["stack", "up", "--run-dir", str(tmp_path), "--free-ports", "--gpus", "1"]
    assert cli.main(argv) == 2
    assert "--gpus: no model to serve on the GPU" in capsys.readouterr().err


def test_an_archive_given_by_its_path_is_loaded_from_its_own_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    archive = (tmp_path / "store" / "geoverdict.mar").resolve()
    argv = [
        "stack",
        "up",
        "--run-dir",
        str(tmp_path / "run"),
        "--free-ports",
        "--services",
        "torchserve",
        "--model",
        f"geoverdict={archive}",
    ]
    properties = _properties_at_up(monkeypatch, argv)
    assert properties["load_models"] == "geoverdict=geoverdict.mar"
    assert properties["model_store"] == str(archive.parent)  # its SHA256SUMS is the one checked


def test_an_archive_outside_the_given_store_is_one_line_saying_what_to_pass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Stack, "up", lambda stack: pytest.fail("started with a stray archive"))
    elsewhere = tmp_path / "elsewhere" / "geoverdict.mar"
    argv = [
        "stack",
        "up",
        "--run-dir",
        str(tmp_path),
        "--free-ports",
        "--services",
        "torchserve",
        "--model-store",
        str(tmp_path / "store"),
        "--model",
        str(elsewhere),
    ]
    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"pass --model-store {elsewhere.parent.resolve()}" in line
