"""`geoverdict export`: a training checkpoint becomes a self-contained model archive.

The checkpoint's model, partitions, hierarchy, input size and temperatures become a bundle
(serving/bundle.py), which serving/archive.py packs into MODEL_STORE/NAME.mar with the code the
handler needs, and records in the model store's SHA256SUMS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoverdict_common import archives
from geoverdict_common.serving import ServingConfig
from geoverdict_training.exceptions import CheckpointError, ConfigError, ExportError
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.inference.best_guess import GuessRule
from geoverdict_training.models.geo_model import ModelSpec
from geoverdict_training.serving.archive import write_archive
from geoverdict_training.serving.bundle import ModelBundle, read_bundle, stored_calibration
from geoverdict_training.train.checkpoint import load_checkpoint


def bundle_from_checkpoint(
    path: Path, name: str = "geoverdict", rule: GuessRule | None = None
) -> ModelBundle:
    """The bundle of a training checkpoint (optimizer state and the like left behind), its best
    guess chosen by `rule` (default: inference/best_guess.py's)."""
    state = load_checkpoint(path)
    config = state["config"]
    try:
        spec = ModelSpec.from_dict(state["spec"])
        partitions = tuple(Partition.from_dict(p) for p in state["partitions"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    ancestors = np.asarray(state["ancestors"], dtype=np.int64) if partitions else None
    calibration, report = stored_calibration(state.get("calibration"), str(path))
    return ModelBundle(
        name=name,
        spec=spec,
        state_dict=dict(state["model"]),
        partitions=partitions,
        ancestors=ancestors,
        input_size=int(config["input_size"]),
        resize=int(config["resize"]),
        training={"step": int(state["step"]), "config": config},
        calibration=calibration,
        calibration_report=report,
        best_guess=rule or GuessRule(),
        baselines=dict(state.get("baselines") or {}),
    )


def load_bundle(path: Path, name: str = "geoverdict") -> ModelBundle:
    """The model of an archive (.mar), a folder of its files, or a training checkpoint (named
    `name`): what `geoverdict evaluate --model` and `scenes propagate` accept."""
    if path.is_dir() or path.suffix == ".mar":
        return read_bundle(path)
    return bundle_from_checkpoint(path, name)


def export_archive(
    checkpoint: Path,
    name: str,
    store: Path,
    serving: ServingConfig | None = None,
    rule: GuessRule | None = None,
) -> tuple[Path, str]:
    """Write STORE/NAME.mar from a training checkpoint, its best guess chosen by `rule`;
    returns its path and model version."""
    bundle = bundle_from_checkpoint(checkpoint, name, rule)
    if not bundle.partitions:
        raise ExportError(f"{checkpoint} is a scene-only model: it cannot serve locations")
    archive = write_archive(bundle, (serving or ServingConfig()).to_yaml(), store)
    archives.record(archive)  # TorchServe's entrypoint loads only archives its store lists
    return archive, bundle.version
