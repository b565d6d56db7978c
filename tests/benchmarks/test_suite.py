"""`python -m benchmarks` at a tiny size: every stage runs and writes valid outputs (integration).
Never timed here; the numbers come from `make bench`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from geoverdict_training.models.backbones import list_backbones
from tests.repo import REPO_ROOT

pytestmark = pytest.mark.integration

KEYS = (
    "raw_images_per_s",
    "handler_images_per_s",
    "torchserve_images_per_s",
    "pipeline_events_per_s",
    "pipeline_p50_ms",
    "pipeline_p95_ms",
    "pipeline_p99_ms",
    "cached_events_per_s",
    "cached_p99_ms",
    "naive_events_per_s",
    "efficiency",
)


def test_bench_runs_every_stage_and_writes_its_three_outputs(tmp_path: Path) -> None:
    if not any((REPO_ROOT / "model_store").glob("*.mar")):
        pytest.fail("no model archive in model_store/ (the demo model is committed there)")
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nprose that must stay\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--events",
            "24",
            "--naive-events",
            "8",
            "--batch-sizes",
            "1",
            "4",
            "--batch-size",
            "4",
            "--concurrency",
            "1",
            "4",
            "--cached-repeats",
            "2",
            "--partition-points",
            "20000",
            "--triton-concurrency",
            "2",
            "--triton-batch-size",
            "4",
            "--triton-batch-sizes",
            "--out",
            str(tmp_path / "out"),
            "--docs",
            str(docs),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,  # the benchmarks are run from the repository's root, not installed
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for key in KEYS:
        assert isinstance(results[key], int | float) and math.isfinite(results[key]), key
        assert results[key] > 0, key
    assert results["pipeline"]["verdicts"] == results["pipeline"]["events"]
    assert results["machine"]["cores"] >= 1
    # What the numbers are of: the archive, its backbone and input size, its version.
    name, _, details = results["model"].partition(": ")
    assert name.endswith(".mar") and details.split(" at ")[0] in list_backbones()
    assert " px, " in details and details.rsplit(", ", 1)[1].startswith(name.removesuffix(".mar"))
    costs = json.loads((tmp_path / "out" / "costs.json").read_text())
    assert costs["torchserve"]["server_images_per_s"] == results["torchserve_images_per_s"]
    assert costs["triton"]["consumer_cpu_ms_cold"] > 0
    assert (tmp_path / "out" / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = docs.read_text()
    assert "prose that must stay" in text and "| pipeline:" in text and "efficiency" in text
    # Triton beside TorchServe, with each server's CPU per image outside the model
    servers = results["servers"]
    for name in ("torchserve", "triton"):
        assert servers[name]["images_per_s"] > 0
        assert servers[name]["server_cpu_ms_per_image"] > 0
        assert servers[name]["consumer_cpu_ms_cold"] > 0
    assert results["triton"]["pipeline"]["verdicts"] == results["triton"]["pipeline"]["events"]
    assert "| | TorchServe | Triton |" in text
    # exactly_once (the default) beside at_least_once on the same stream
    assert (
        results["at_least_once"]["pipeline"]["verdicts"]
        == results["at_least_once"]["pipeline"]["events"]
    )
    assert results["guarantees"]["default_called_for"] in {"exactly_once", "at_least_once"}
    assert "| | exactly_once (default) | at_least_once |" in text
