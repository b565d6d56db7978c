"""TorchServe on GPUs: every archive registered with the GPU settings per GPU, one line per
setting for the GPU image's build, and a GPU configuration's batching applied by the real
TorchServe (integration, no GPU needed)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from geoverdict_common.exceptions import ServingConfigError
from geoverdict_common.serving import ServingConfig
from geoverdict_modelserver import torchserve_gpu
from geoverdict_modelserver.torchserve_gpu import GPU_SERVING, gpu_properties, model_snapshot
from geoverdict_stack.stack import Stack, StackConfig


def test_the_gpu_configuration_registers_every_archive_with_the_gpu_settings() -> None:
    models = {"geoverdict": "demo.mar", "other": "other.mar"}
    properties = gpu_properties(models, gpus=2)
    assert properties["number_of_gpu"] == "2"
    snapshot = json.loads(properties["model_snapshot"])
    assert snapshot["modelCount"] == 2
    (entry,) = snapshot["models"]["geoverdict"].values()
    assert entry["marName"] == "demo.mar" and entry["defaultVersion"] is True
    assert entry["batchSize"] == GPU_SERVING.batch_size
    assert entry["maxBatchDelay"] == GPU_SERVING.max_batch_delay_ms
    assert entry["minWorkers"] == entry["maxWorkers"] == 2 * GPU_SERVING.min_workers  # per GPU
    with pytest.raises(ServingConfigError, match="GPUs must be >= 1"):
        gpu_properties(models, gpus=0)


def test_the_gpu_image_gets_one_line_per_setting_for_its_model_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "geoverdict.mar").write_bytes(b"")
    assert torchserve_gpu.main(["--model-store", str(tmp_path), "--gpus", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    properties = dict(line.split("=", 1) for line in lines)
    assert set(properties) == {"number_of_gpu", "model_snapshot"}
    assert json.loads(properties["model_snapshot"])["models"]["geoverdict"]["1.0"]["marName"] == (
        "geoverdict.mar"
    )
    assert torchserve_gpu.main(["--model-store", str(tmp_path / "empty")]) == 2


@pytest.mark.integration
def test_a_gpu_configuration_serves_the_archive_with_its_own_batching(tmp_path: Path) -> None:
    # The archive says batch 4, 50 ms, 2 workers; the snapshot wins (no GPU needed for that).
    from geoverdict.demo.archive import find_archive

    archive = find_archive(None)
    config = StackConfig.with_free_ports(
        run_dir=tmp_path / "stack",
        services=("torchserve",),
        model_store=archive.parent,
        models=(f"gpu-test={archive.name}",),
    )
    stack = Stack(config)
    settings = ServingConfig(batch_size=8, max_batch_delay_ms=7, min_workers=1, max_workers=1)
    stack.torchserve.overrides["model_snapshot"] = model_snapshot(
        {"gpu-test": archive.name}, settings
    )
    with stack:
        request = urllib.request.Request(
            f"{stack.torchserve.url('management')}/models/gpu-test",
            headers={"Authorization": f"Bearer {stack.torchserve_keys()['management']}"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            (described,) = json.loads(resp.read())
    assert (described["batchSize"], described["maxBatchDelay"]) == (8, 7)
    assert (described["minWorkers"], described["maxWorkers"]) == (1, 1)
