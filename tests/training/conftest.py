"""A tiny model trained once per session, for the tests of everything downstream of training,
and the same model with strong temperatures."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from geoverdict_common.serving import ServingConfig
from geoverdict_training.images.decode import decode_image
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.serving.archive import model_config_of, rewrite_archive
from geoverdict_training.serving.bundle import read_bundle
from geoverdict_training.train.config import TrainConfig
from geoverdict_training.train.export import export_archive
from geoverdict_training.train.trainer import TrainResult, train
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


@pytest.fixture(scope="session")
def hot_archive(tiny_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny archive re-written with strong temperatures (far from the fitted ones), so
    that an answer that ignored them could not pass for a calibrated one."""
    bundle = read_bundle(tiny_archive)
    names = [p.name for p in bundle.partitions]
    calibration = Calibration({names[0]: 3.0, names[1]: 5.0, "scene_s3": 4.0}, hierarchy=2.0)
    hot = dataclasses.replace(bundle, name="hot", calibration=calibration)
    out = tmp_path_factory.mktemp("hot") / "hot.mar"
    return rewrite_archive(hot, model_config_of(tiny_archive), out)


def in_process_cells(archive: Path, body: bytes) -> dict[str, float]:
    """Fine cell token -> probability for one image, through the archive's bundle in this
    process (what the handler must answer)."""
    bundle = read_bundle(archive)
    image = decode_image(body, min_side=bundle.resize)
    output = bundle.predictor()(bundle.transform()(image)[None])
    if output.cells is None:
        raise RuntimeError("a geo archive predicts cells")
    tokens = bundle.partitions[-1].tokens
    return dict(zip(tokens, output.cells[0].tolist(), strict=True))
