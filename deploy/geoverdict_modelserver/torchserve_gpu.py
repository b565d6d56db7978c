"""How TorchServe serves archives on GPUs: their batch size, delay and workers per GPU.

On a CPU, the archive's model-config.yaml (geoverdict_common.serving, written by `geoverdict
export`) says it all. On GPUs the same archive is served with other values, without re-packing
it (its hash in the model store's SHA256SUMS stays valid). TorchServe 0.12 gives models listed
in `load_models` the archive's values, and a model registered over the management API the
archive's workers (both tried); models registered at start from `model_snapshot` take every
value from the snapshot (tried: batch 8, delay 7 ms, 1 worker over the archive's 4, 50 ms, 2).
`gpu_properties` writes that snapshot, and `number_of_gpu`, for the TorchServe configuration of
a GPU machine: `geoverdict stack up --gpu` adds them to its own, and the GPU image appends what
`python -m geoverdict_modelserver.torchserve_gpu --gpus N --model-store DIR` prints to its
config.properties.

GPU_SERVING's values were chosen from measurements on an H200 and on this project's CPU, not
yet confirmed by `python -m benchmarks --device cuda` (docs/operations.md, "GPU serving").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from geoverdict_common.exceptions import ServingConfigError
from geoverdict_common.serving import ServingConfig
from geoverdict_modelserver.model_load import model_archives

# Per GPU. A batch of 64 keeps the GPU's share of an image small (decode + crop ~7 ms and the
# bf16 model ~5 ms per 64 on an H200) and fills in ~13 ms at 5,000 images/s; 5 ms of delay caps
# what a lone request waits when traffic is light. Each worker still spends ~0.45 ms of one CPU
# core per image (header, reply, JSON; measured on this project's CPU) while its GPU work takes
# ~0.2 ms: four workers per GPU overlap one's CPU part with the others' GPU part. To be confirmed
# by `python -m benchmarks --device cuda` and the TorchServe sweep on the GPU machine.
GPU_SERVING = ServingConfig(batch_size=64, max_batch_delay_ms=5, min_workers=4, max_workers=4)


def gpu_properties(
    models: Mapping[str, str], gpus: int = 1, serving: ServingConfig = GPU_SERVING
) -> dict[str, str]:
    """config.properties entries serving `models` (name -> archive file) on `gpus` GPUs with
    `serving`'s settings per GPU (TorchServe spreads a model's workers over the GPUs)."""
    if gpus < 1:
        raise ServingConfigError(f"the number of GPUs must be >= 1, got {gpus}")
    if not models:
        raise ServingConfigError("no model to serve on the GPU: name at least one archive")
    total = replace(
        serving, min_workers=serving.min_workers * gpus, max_workers=serving.max_workers * gpus
    )
    return {"number_of_gpu": str(gpus), "model_snapshot": model_snapshot(models, total)}


def model_snapshot(models: Mapping[str, str], serving: ServingConfig) -> str:
    """TorchServe's `model_snapshot` value: `models` (name -> archive file) registered at start
    with `serving`'s settings, whatever their archives' model-config.yaml says."""
    snapshot = {
        "name": "geoverdict-gpu",
        "modelCount": len(models),
        # TorchServe keys versions by the archive's own version; this key is only a label.
        "models": {name: {"1.0": snapshot_entry(serving, mar)} for name, mar in models.items()},
    }
    return json.dumps(snapshot)


def snapshot_entry(serving: ServingConfig, archive: str) -> dict[str, Any]:
    """One model version of a TorchServe `model_snapshot`, serving `archive` (a file of the
    model store) with `serving`'s settings."""
    return {
        "defaultVersion": True,
        "marName": archive,
        "minWorkers": serving.min_workers,
        "maxWorkers": serving.max_workers,
        "batchSize": serving.batch_size,
        "maxBatchDelay": serving.max_batch_delay_ms,
        "responseTimeout": serving.response_timeout_s,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the GPU entries for the archives of a model store (the GPU image's build)."""
    parser = argparse.ArgumentParser(description="TorchServe configuration lines for GPUs")
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the server gets")
    args = parser.parse_args(argv)
    archives = sorted(path.name for path in args.model_store.glob("*.mar"))
    try:
        properties = gpu_properties(model_archives(archives), args.gpus)
    except ServingConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("# GPU serving (geoverdict_modelserver.torchserve_gpu, docs/operations.md)")
    for key, value in properties.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
