"""Training checkpoints: one typed state, written atomically beside last.pt, read back checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoverdict_training.exceptions import CheckpointError
from geoverdict_training.train import checkpoint
from geoverdict_training.train.checkpoint import (
    Checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
)


def state(step: int) -> Checkpoint:
    return {
        "format": checkpoint.FORMAT,
        "config": {"backbone": "resnet18", "max_steps": 30},
        "spec": {"backbone": "resnet18", "partitions": []},
        "model": {"head.weight": torch.full((2, 3), float(step))},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"last_epoch": step},
        "scaler": {},
        "step": step,
        "epoch": 1,
        "epoch_samples": 64,
        "partitions": [],
        "ancestors": torch.zeros((0, 0), dtype=torch.int64),
        "rng": rng_state(),
    }


def test_a_saved_checkpoint_is_its_step_file_and_last_pt(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    assert save_checkpoint(folder, state(10)) == folder / "step_0000010.pt"
    save_checkpoint(folder, state(20) | {"calibration": {"temperatures": {"cells": 1.5}}})
    assert sorted(p.name for p in folder.iterdir()) == [
        "last.pt",
        "step_0000010.pt",
        "step_0000020.pt",
    ]
    last = load_checkpoint(folder / "last.pt")
    assert last["step"] == 20 and last["calibration"]["temperatures"] == {"cells": 1.5}
    torch.testing.assert_close(last["model"]["head.weight"], torch.full((2, 3), 20.0))
    assert "calibration" not in load_checkpoint(folder / "step_0000010.pt")


def test_a_crash_while_writing_leaves_the_last_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, state(10))

    def crash(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"half a checkp")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder, state(20))
    monkeypatch.undo()
    assert load_checkpoint(folder / "last.pt")["step"] == 10
    assert not (folder / "step_0000020.pt").exists()


def test_a_checkpoint_written_before_the_type_still_loads(tmp_path: Path) -> None:
    # The previous code's file: a plain dict, "format" first, saved by torch.save.
    old = tmp_path / "step_0000030.pt"
    torch.save({"format": "geoverdict-checkpoint-1", **state(30)}, old)
    assert load_checkpoint(old)["step"] == 30


def test_a_checkpoint_without_a_key_says_which(tmp_path: Path) -> None:
    broken = dict(state(5))
    del broken["rng"], broken["scaler"]
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="lacks rng, scaler"):
        load_checkpoint(tmp_path / "broken.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a geoverdict training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
