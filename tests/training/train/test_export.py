"""`export`: the archive loads in the real TorchServe and answers the prediction contract, with
the temperatures of a calibrated model."""

from __future__ import annotations

import json
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from geoverdict_common.contract import PREDICTION, errors
from geoverdict_stack.stack import Stack
from geoverdict_training.exceptions import ExportError
from geoverdict_training.serving.bundle import read_bundle
from geoverdict_training.train.config import TrainConfig
from geoverdict_training.train.export import export_archive
from geoverdict_training.train.trainer import train
from tests.stack_fixtures import register_model
from tests.training.conftest import in_process_cells
from tests.training.imagefiles import jpeg_bytes
from tests.training.synthetic import tiny_config, write_collection


def test_a_scene_only_model_is_not_exported(tmp_path: Path) -> None:
    write_collection(tmp_path, per_place=2)
    config = tiny_config(tmp_path, scene_only=True, max_steps=1, val_fraction=0.0)
    result = train(TrainConfig.from_dict(config))
    assert result.checkpoint is not None
    with pytest.raises(ExportError, match="scene-only"):
        export_archive(result.checkpoint, "scenes", tmp_path / "store")


def _predict(stack: Stack, model: str, body: bytes) -> Any:
    request = urllib.request.Request(
        f"{stack.torchserve.url('inference')}/predictions/{model}",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {stack.torchserve_keys()['inference']}",
            "Content-Type": "application/octet-stream",  # urllib's default would be a form
        },
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


@pytest.mark.integration
def test_export_then_torchserve_then_predict_round_trips(stack: Stack, tiny_archive: Path) -> None:
    archive = stack.config.model_store / "tinygeo.mar"
    shutil.copyfile(tiny_archive, archive)
    model = register_model(stack, archive, batch_size=4, max_batch_delay_ms=200, workers=1)
    version = read_bundle(tiny_archive).version
    bodies = [jpeg_bytes((64, 48)), b"not an image, a text file", b""]
    with ThreadPoolExecutor(len(bodies)) as pool:  # concurrent: one server-side batch
        photo, text, empty = pool.map(lambda body: _predict(stack, model, body), bodies)
    for reply in (photo, text, empty):
        assert errors(PREDICTION, reply) == []
        assert reply["model_version"] == version
    assert "error" not in photo and photo["cells"] and photo["scene"]["s3"]["label"]
    assert text["error"]["code"] == "undecodable"
    assert empty["error"]["code"] == "empty"


@pytest.mark.integration
def test_temperatures_survive_the_archive_and_the_real_torchserve(
    stack: Stack, hot_archive: Path
) -> None:
    archive = stack.config.model_store / "hotgeo.mar"
    shutil.copyfile(hot_archive, archive)
    model = register_model(stack, archive, batch_size=1, workers=1)
    version = read_bundle(hot_archive).version
    for size, colour in (
        ((64, 48), (200, 30, 30)),
        ((48, 64), (30, 200, 30)),
        ((33, 90), (0, 0, 0)),
    ):
        photo = jpeg_bytes(size, colour)
        reply = _predict(stack, model, photo)
        assert errors(PREDICTION, reply) == [] and reply["model_version"] == version
        expected = in_process_cells(hot_archive, photo)
        assert len(reply["cells"]) >= 2  # the temperatures spread the mass
        for cell in reply["cells"]:
            assert cell["probability"] == pytest.approx(expected[cell["token"]], abs=1e-5)
