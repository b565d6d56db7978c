"""Training checkpoints: everything to continue a run at the same step, and to rebuild its model.

A checkpoint is one `torch.save` of plain types and tensors (loaded with `weights_only=True`,
never arbitrary pickles): the final config, the model spec, the partitions and their hierarchy,
model / optimizer / scheduler / grad-scaler states, the step, the position in the epoch, and
the random number generators' states.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoverdict_training.exceptions import CheckpointError
from geoverdict_training.train.config import TrainConfig

FORMAT = "geoverdict-checkpoint-1"
REQUIRED = (
    "format",
    "config",
    "spec",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "step",
    "epoch",
    "epoch_samples",
    "partitions",
    "ancestors",
    "rng",
)
# Config keys that shape the model, its classes or the optimizer state: a resumed run must
# agree on them. Paths, batch size, step counts and logging may change between runs.
RESUME_KEYS = (
    "backbone",
    "scene_only",
    "partitions",
    "scenes",
    "optimizer",
    "freeze_backbone",
    "trainable",
    "val_fraction",
    "split_seed",
    "limit",
)


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write atomically (a crash mid-write never leaves a broken `last.pt`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, **state}, partial)
    partial.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; CheckpointError says why it is not one."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a geoverdict training checkpoint ({FORMAT})")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state


def check_resumable(state: Mapping[str, Any], config: TrainConfig, path: Path) -> None:
    """Raise CheckpointError naming every model-shaping key where config and checkpoint differ."""
    saved = state["config"]
    wanted = config.to_dict()
    differ = [
        f"{key}: checkpoint {saved.get(key)!r}, config {wanted[key]!r}"
        for key in RESUME_KEYS
        if saved.get(key) != wanted[key]
    ]
    if differ:
        raise CheckpointError(
            f"cannot resume from {path}: it was trained with other settings ("
            + "; ".join(differ)
            + "); start a new run (another out_dir) or use the checkpoint's settings"
        )


def rng_state() -> dict[str, Any]:
    """The states of Python's, numpy's and torch's generators (as plain types and tensors)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore `rng_state()`."""
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    """random.setstate wants the nested tuples back (a round trip may turn them into lists)."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(item) for item in value)
    return value
