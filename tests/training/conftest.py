"""A tiny model trained once per session, for the tests of everything downstream of training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from geoverdict_training.config import TrainConfig
from geoverdict_training.export import ServingConfig, export_archive
from geoverdict_training.trainer import TrainResult, train
from tests.training.synthetic import tiny_config, write_collection


@dataclass(frozen=True)
class TinyRun:
    """A finished run on the synthetic collection: its folder, result and checkpoint."""

    folder: Path  # meta.csv, images/, run/
    result: TrainResult
    checkpoint: Path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """30 steps of a 32-px ResNet-18 on the four-place collection (a few seconds on CPU)."""
    folder = tmp_path_factory.mktemp("tiny")
    write_collection(folder)
    result = train(TrainConfig.from_dict(tiny_config(folder, max_steps=30, checkpoint_every=10)))
    if result.checkpoint is None:
        raise RuntimeError("the tiny run saved no checkpoint")
    return TinyRun(folder, result, result.checkpoint)


@pytest.fixture(scope="session")
def tiny_archive(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported as a TorchServe archive, store/tiny.mar."""
    store = tmp_path_factory.mktemp("store")
    archive, _ = export_archive(tiny_run.checkpoint, "tiny", store, ServingConfig(batch_size=4))
    return archive
