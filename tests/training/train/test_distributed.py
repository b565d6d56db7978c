"""The same `geoverdict train` under torchrun: two CPU processes (gloo) share the epochs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from geoverdict_training.train.checkpoint import load_checkpoint
from geoverdict_training.train.distributed import setup
from tests.training.synthetic import tiny_config, write_collection


def test_without_torchrun_a_process_trains_alone() -> None:
    process = setup("cpu")
    assert (process.rank, process.world_size, process.is_main) == (0, 1, True)
    assert not process.distributed


@pytest.mark.slow
def test_torchrun_with_two_processes_trains_one_model(tmp_path: Path) -> None:
    write_collection(tmp_path)  # 64 photos, 48 for training: 24 per process, 3 batches of 8
    config = tiny_config(tmp_path, max_steps=4, grad_accum=2, workers=1, checkpoint_every=2)
    overrides = [f"{key}={json.dumps(value)}" for key, value in config.items()]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "geoverdict",
            "train",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    # 4 steps x 2 micro-batches = 8 batches per process, 3 per epoch: 2 epochs and 2 batches done
    assert (state["step"], state["epoch"], state["epoch_samples"]) == (4, 2, 16)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in records if '"train"' in line]
    assert steps == [1, 2, 3, 4]  # written by rank 0 only
