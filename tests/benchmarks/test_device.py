"""`python -m benchmarks --device` on a CPU at a tiny size: every path runs, the results and the
GPU section are written, and nothing of Kafka, the service or the stack is needed (a GPU box
may have none of them). Never timed here; GPU numbers come from a GPU machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import device
from tests.repo import REPO_ROOT

KEYS = (
    "raw_images_per_s",
    "handler_images_per_s",
    "handler_pillow_images_per_s",
    "train_lite0_images_per_s",
    "train_resnet50_images_per_s",
)

# Runs the benchmarks' command line with kafka, the service and the stack unimportable, as on a
# machine where they are not installed.
_WITHOUT_SERVICE = """
import importlib.abc, sys
BLOCKED = ("kafka", "redis", "geoverdict_service", "geoverdict_stack")

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
from benchmarks.commands import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_device_bench_runs_every_path_without_kafka_the_service_or_the_stack(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nprose that must stay\n")
    out = tmp_path / "out"
    argv = ["--device", "cpu", "--tiny", "--out", str(out), "--docs", str(docs)]
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SERVICE, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results-device-cpu.json").read_text())
    assert results["device"] == "cpu" and results["model"].endswith(".mar")
    for key in KEYS:
        assert isinstance(results[key], float) and math.isfinite(results[key]), key
        assert results[key] > 0, key
    assert {p["precision"] for p in results["raw"]} == {"fp32", "bf16", "bf16+channels_last"}
    assert [t["backbone"] for t in results["train"]] == ["efficientnet_lite0", "resnet50"]
    assert all(t["random_tensors_images_per_s"] > 0 for t in results["train"])
    text = docs.read_text()
    assert "prose that must stay" in text
    section = text.split(device.BEGIN, 1)[1].split(device.END, 1)[0]
    assert "handler in process, GPU decode" in section and "training resnet50" in section


def test_a_device_torch_cannot_see_is_one_line_not_a_cpu_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    from benchmarks.commands import main

    assert main(["--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device cuda: torch sees no CUDA device here"
