"""Training checkpoints: everything to continue a run at the same step, and to rebuild its model.

A checkpoint is one `torch.save` of plain types and tensors (loaded with `weights_only=True`,
never arbitrary pickles): the final config, the model spec, the partitions and their hierarchy,
model / optimizer / scheduler / grad-scaler states, the step, the position in the epoch, and
the random number generators' states: a `Checkpoint`. `save_checkpoint` is the one way to write
one (atomically, and `last.pt` beside it); the format on disk is a plain dict, so checkpoints
written before the type existed load as they are.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypedDict, cast

import numpy as np
import torch

from geoverdict_training.exceptions import CheckpointError
from geoverdict_training.train.config import TrainConfig

FORMAT = "geoverdict-checkpoint-1"
LATEST = "last.pt"


class _Saved(TypedDict):
    """What every checkpoint file holds (as plain types and tensors)."""

    format: str  # FORMAT
    config: dict[str, Any]  # TrainConfig.to_dict(): the run's final config
    spec: dict[str, Any]  # ModelSpec.to_dict(): rebuilds the model without the config
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    step: int
    epoch: int
    epoch_samples: int  # samples of this epoch already drawn: resume continues after them
    partitions: list[dict[str, Any]]  # Partition.to_dict(), coarse to fine
    ancestors: torch.Tensor  # (fine cells, partitions) int64; (0, 0) for a scene-only model
    rng: dict[str, Any]  # rng_state()


# A subclass, not NotRequired: under postponed annotations only `total` tells the runtime's
# __required_keys__ (which load_checkpoint checks) that a key may be absent.
class Checkpoint(_Saved, total=False):
    """A checkpoint: what every one holds, the temperatures at the end of a run, and the
    training photos' baselines (geo models)."""

    calibration: dict[str, Any]  # fitted on the held-out photographers (calibration.py)
    baselines: dict[str, Any]  # of the training photos (evaluation/baselines.py)


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


def save_checkpoint(folder: Path, state: Checkpoint) -> Path:
    """Write FOLDER/step_NNNNNNN.pt, then FOLDER/last.pt as a copy of it; returns the first.
    Each file appears in one rename, so a crash mid-write never leaves a broken one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{state['step']:07d}.pt"
    _write_atomically(path, lambda partial: torch.save(dict(state), partial))
    _write_atomically(folder / LATEST, lambda partial: shutil.copyfile(path, partial))
    return path


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    partial.replace(path)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint onto the CPU; CheckpointError says why it is not one."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a geoverdict training checkpoint ({FORMAT})")
    missing = sorted(Checkpoint.__required_keys__ - state.keys())
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return cast(Checkpoint, state)


def check_resumable(state: Checkpoint, config: TrainConfig, path: Path) -> None:
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
