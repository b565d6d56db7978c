"""The Triton Python-backend model in process, with a stand-in for Triton's module: a merged
batch of requests answered in one Responder pass, each request its replies, the archive checked
against its SHA256SUMS before it loads."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoverdict_common import archives
from geoverdict_modelserver.triton_repository import TritonServing, add_model
from geoverdict_training.exceptions import TrainingError
from geoverdict_training.serving.responder import Responder
from geoverdict_training.serving.triton_model import TritonPythonModel
from tests.training.imagefiles import jpeg_bytes


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Response:
    def __init__(self, tensors: list[_Tensor]) -> None:
        self.tensors = tensors


@pytest.fixture
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = _Response  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: request[name]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def _model_args(tiny_archive: Path, tmp_path: Path) -> dict[str, Any]:
    store = tmp_path / "store"
    store.mkdir()
    shutil.copyfile(tiny_archive, store / "tiny.mar")
    archives.record(store / "tiny.mar")
    folder = add_model(tmp_path / "repo", "tiny", store / "tiny.mar")
    config = {
        "parameters": {
            "threads": {"string_value": "1"},
            "max_image_bytes": {"string_value": "100000"},
        }
    }
    return {
        "model_config": json.dumps(config),
        "model_repository": str(folder.parent),
        "model_version": "1",
        "model_instance_kind": "CPU",
    }


def _request(*images: bytes) -> dict[str, _Tensor]:
    return {"IMAGE": _Tensor("IMAGE", np.array(images, dtype=np.object_).reshape(-1, 1))}


def test_a_merged_batch_answers_each_request_as_the_responder_does(
    pb_utils: types.ModuleType, tiny_archive: Path, tmp_path: Path
) -> None:
    model = TritonPythonModel()
    model.initialize(_model_args(tiny_archive, tmp_path))
    photos = [jpeg_bytes((64, 48)), jpeg_bytes((40, 40), (10, 200, 30))]
    responses = model.execute([_request(photos[0], b"not an image"), _request(photos[1])])
    replies = [[json.loads(e) for e in r.tensors[0].array.reshape(-1)] for r in responses]
    assert [len(r) for r in replies] == [2, 1]
    assert [t.array.shape for r in responses for t in r.tensors] == [(2, 1), (1, 1)]
    expected = Responder.from_archive(tiny_archive).answer([photos[0], photos[1]])
    assert replies[0][0] == {**expected[0], "timings_ms": replies[0][0]["timings_ms"]}
    assert replies[1][0]["cells"] == expected[1]["cells"]
    assert replies[0][1]["error"]["code"] == "undecodable"
    assert replies[0][1]["model_version"] == expected[0]["model_version"]
    assert TritonServing().config_pbtxt("tiny")  # the config this model is served with


def test_an_archive_changed_since_the_store_recorded_it_does_not_load(
    pb_utils: types.ModuleType, tiny_archive: Path, tmp_path: Path
) -> None:
    args = _model_args(tiny_archive, tmp_path)
    archive = tmp_path / "store" / "tiny.mar"
    archive.write_bytes(archive.read_bytes() + b"\0")
    with pytest.raises(TrainingError, match="SHA-256 differs"):
        TritonPythonModel().initialize(args)
