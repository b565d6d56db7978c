"""The GPU deployment serves with the GPU batching: docker-compose.gpu.yml asks the TorchServe
image for it, and the image's build step appends TorchServe's GPU entries (run here as a shell
command, without an engine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from geoverdict_common.serving import GPU_SERVING
from geoverdict_stack.torchserve import read_properties
from tests.repo import REPO_ROOT

GPU = REPO_ROOT / "docker-compose.gpu.yml"
DOCKERFILE = REPO_ROOT / "deploy" / "torchserve" / "Dockerfile"
STORE, CONFIG = "/home/model-server/model-store", "/home/model-server/config.properties"


def test_the_gpu_compose_builds_torchserve_for_the_gpus_it_reserves() -> None:
    torchserve = yaml.safe_load(GPU.read_text())["services"]["torchserve"]
    args = torchserve["build"]["args"]
    (device,) = torchserve["deploy"]["resources"]["reservations"]["devices"]
    assert args["SERVING"] == "gpu"
    assert args["TORCHSERVE_GPUS"] == device["count"]


def _build_step(serving: str, store: Path, config: Path) -> None:
    """The Dockerfile's GPU RUN step, on a local model store and configuration."""
    text = DOCKERFILE.read_text()
    step = text[text.index('RUN if [ "$SERVING"') + len("RUN ") :]
    step = step[: step.index("fi\n") + 2]
    step = step.replace(STORE, str(store)).replace(CONFIG, str(config))
    step = step.replace("python -m", f"{sys.executable} -m")
    env = {**os.environ, "SERVING": serving, "TORCHSERVE_GPUS": "2"}
    subprocess.run(["sh", "-c", step], check=True, env=env, cwd=REPO_ROOT, timeout=60)


def test_the_gpu_image_serves_every_archive_with_the_gpu_settings(tmp_path: Path) -> None:
    store, config = tmp_path / "store", tmp_path / "config.properties"
    store.mkdir()
    (store / "geoverdict.mar").write_bytes(b"")
    config.write_text("inference_address=http://0.0.0.0:8080\n")
    _build_step("cpu", store, config)
    assert read_properties(config.read_text()) == {"inference_address": "http://0.0.0.0:8080"}
    _build_step("gpu", store, config)
    properties = read_properties(config.read_text())
    assert properties["inference_address"] == "http://0.0.0.0:8080"
    assert properties["number_of_gpu"] == "2"
    (entry,) = json.loads(properties["model_snapshot"])["models"]["geoverdict"].values()
    assert entry["batchSize"] == GPU_SERVING.batch_size
    assert entry["minWorkers"] == entry["maxWorkers"] == 2 * GPU_SERVING.min_workers
