"""The GPU deployment serves with the GPU batching: docker-compose.gpu.yml asks the TorchServe
image for it, and the image's build step appends TorchServe's GPU entries (run here as a shell
command, without an engine); docker-compose.triton-gpu.yml builds Triton's image with
SERVING=gpu, whose entrypoint script then asks for the GPU instance groups and batching."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from geoverdict_modelserver.torchserve_config import read_properties
from geoverdict_modelserver.torchserve_gpu import GPU_SERVING
from geoverdict_modelserver.triton_repository import GPU_TRITON
from tests.repo import REPO_ROOT

GPU = REPO_ROOT / "docker-compose.gpu.yml"
DOCKERFILE = REPO_ROOT / "deploy" / "torchserve" / "Dockerfile"
STORE, CONFIG = "/home/model-server/model-store", "/home/model-server/config.properties"
TRITON_GPU = REPO_ROOT / "docker-compose.triton-gpu.yml"
TRITON_IMAGE = REPO_ROOT / "deploy" / "triton"


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


def _triton_entrypoint(tmp_path: Path, serving: str | None) -> subprocess.CompletedProcess[str]:
    """The Triton image's entrypoint script, its python3 a stand-in printing its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "python3"
    stand_in.write_text('#!/bin/sh\necho "$@"\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **({"SERVING": serving} if serving else {})}
    script = str(TRITON_IMAGE / "entrypoint.sh")
    return subprocess.run(
        ["sh", script, "--load", "all", "--", "tritonserver"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_triton_image_asks_for_the_gpu_batching_when_serving_is_gpu(tmp_path: Path) -> None:
    entrypoint = ["-m", "geoverdict_modelserver.triton_entrypoint"]
    given = ["--load", "all", "--", "tritonserver"]
    for serving in (None, "cpu"):
        assert _triton_entrypoint(tmp_path, serving).stdout.split() == [*entrypoint, *given]
    assert _triton_entrypoint(tmp_path, "gpu").stdout.split() == [*entrypoint, "--gpu", *given]
    wrong = _triton_entrypoint(tmp_path, "tpu")
    assert wrong.returncode == 2 and "SERVING must be cpu or gpu" in wrong.stderr
    dockerfile = (TRITON_IMAGE / "Dockerfile").read_text()
    assert "ARG SERVING=cpu" in dockerfile and "ENV SERVING=${SERVING}" in dockerfile


def test_the_triton_gpu_compose_builds_for_gpus_and_fills_their_batches() -> None:
    services = yaml.safe_load(TRITON_GPU.read_text())["services"]
    triton = services["triton"]
    assert triton["build"]["args"]["SERVING"] == "gpu"
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    env = services["consumer-triton"]["environment"]
    defaults = {k: re.fullmatch(r"\$\{\w+:-(\d+)\}", str(v)) for k, v in env.items()}
    batch, concurrency = (
        int(defaults[f"GEOVERDICT_TRITON_{name}"][1])  # a ${VARIABLE:-default} each
        for name in ("BATCH_SIZE", "CONCURRENCY")
    )
    # Images in flight from the consumers: a batch for every instance and one more waiting.
    assert batch * concurrency >= 2 * GPU_TRITON.count * max(GPU_TRITON.preferred_batch_sizes)
    assert batch <= GPU_TRITON.max_batch_size
