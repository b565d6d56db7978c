"""A trained model as the serving side needs it: weights plus everything to interpret them.

A bundle is two files: `weights.pt` (the model's state dict, tensors only) and `metadata.json`
(model spec, partitions with tokens / levels / mean points, the hierarchy, scene label names,
the input transform, the training config, and the temperatures of a calibrated model). It comes
from a training checkpoint, and is stored inside a TorchServe archive (.mar, a zip), from which
it loads back without unzipping.

The model version is the model name plus a short hash of the weights and the metadata, so two
archives with the same version answer the same; it appears in every reply of the handler.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from geoverdict_training.exceptions import CheckpointError, ConfigError
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.images.transforms import InputSpec, eval_transform, five_crop_transform
from geoverdict_training.inference.best_guess import GuessRule
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.inference.predictor import Predictor
from geoverdict_training.models.backbones import backbone_info
from geoverdict_training.models.geo_model import GeoModel, ModelSpec
from geoverdict_training.vocabulary import scene_names

FORMAT = "geoverdict-model-1"
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"
HASH_CHARS = 10


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """Weights, classes and preprocessing of one trained model."""

    name: str
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    partitions: tuple[Partition, ...]  # coarse -> fine; empty for a scene-only model
    ancestors: npt.NDArray[np.int64] | None  # (n_fine, n_partitions) hierarchy
    input_size: int
    resize: int
    training: dict[str, Any] = field(default_factory=dict)  # config and step, for the record
    calibration: Calibration | None = None  # temperatures; None: uncalibrated (all T = 1)
    # How the temperatures were fitted (photos, NLL and ECE before / after), for the record.
    calibration_report: dict[str, Any] = field(default_factory=dict)
    # How the best guess is chosen (None: an archive older than the rule; it gets the default).
    best_guess: GuessRule | None = None
    # The trivial answers computed from the training photos alone (evaluation/baselines.py),
    # reported beside the model by every evaluation; empty for archives older than them.
    baselines: dict[str, Any] = field(default_factory=dict)

    @property
    def guess_rule(self) -> GuessRule:
        """The rule this model's best guess follows."""
        return self.best_guess or GuessRule()

    @cached_property
    def version(self) -> str:
        """`NAME-HASH`: the name and a short hash of the weights and the metadata."""
        digest = hashlib.sha256()
        for key, tensor in self.state_dict.items():
            digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(json.dumps(self._metadata(), sort_keys=True).encode())
        return f"{self.name}-{digest.hexdigest()[:HASH_CHARS]}"

    def _metadata(self) -> dict[str, Any]:
        info = backbone_info(self.spec.backbone)
        names = scene_names()
        metadata: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "spec": self.spec.to_dict(),
            "partitions": [p.to_dict() for p in self.partitions],
            "hierarchy": None if self.ancestors is None else self.ancestors.tolist(),
            "scene_names": {s: list(names[s]) for s in self.spec.scenes},
            "input": {
                "size": self.input_size,
                "resize": self.resize,
                "mean": list(info.mean),
                "std": list(info.std),
            },
            "training": self.training,
        }
        if self.calibration is not None:  # absent, not null: older archives keep their version
            metadata["calibration"] = {
                **self.calibration.to_dict(),
                "report": self.calibration_report,
            }
        if self.best_guess is not None:  # absent likewise
            metadata["best_guess"] = str(self.best_guess)
        if self.baselines:
            metadata["baselines"] = self.baselines
        return metadata

    def metadata(self) -> dict[str, Any]:
        """metadata.json's content, the model version included."""
        return {**self._metadata(), "model_version": self.version}

    def model(self, device: torch.device | str = "cpu", channels_last: bool = False) -> GeoModel:
        """The network with these weights, in eval mode; `channels_last` (NHWC, faster for
        convolutions on a GPU's tensor cores) wants its inputs in that layout too."""
        model = GeoModel(self.spec, pretrained=False)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as exc:
            raise CheckpointError(f"the weights do not fit the model spec: {exc}") from exc
        model = model.to(device).eval()
        return model.to(memory_format=torch.channels_last) if channels_last else model

    def predictor(
        self, device: torch.device | str = "cpu", channels_last: bool = False
    ) -> Predictor:
        """Images -> probabilities with this model."""
        return Predictor(
            self.model(device, channels_last),
            self.partitions,
            self.ancestors,
            self.spec.scenes,
            self.calibration,
        )

    def input_spec(self) -> InputSpec:
        """The input the model was trained for: crop, resize and normalisation."""
        info = backbone_info(self.spec.backbone)
        return InputSpec(self.input_size, self.resize, info.mean, info.std)

    def transform(self, five_crop: bool = False) -> Callable[[Image.Image], torch.Tensor]:
        """The evaluation transform the model was trained for: resize, centre crop, normalise;
        with `five_crop`, the four corner crops and the centre one (5, 3, H, W)."""
        spec = self.input_spec()
        make = five_crop_transform if five_crop else eval_transform
        return make(spec.size, spec.resize, mean=spec.mean, std=spec.std)


def stored_calibration(
    data: Mapping[str, Any] | None, source: str
) -> tuple[Calibration | None, dict[str, Any]]:
    """The temperatures and fitting report stored in a checkpoint or metadata.json, if any."""
    if data is None:
        return None, {}
    try:
        return Calibration.from_dict(data), dict(data.get("report") or {})
    except (ConfigError, AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: malformed calibration: {exc}") from exc


def write_bundle(bundle: ModelBundle, folder: Path) -> tuple[Path, Path]:
    """Write weights.pt and metadata.json into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    weights, metadata = folder / WEIGHTS_FILE, folder / METADATA_FILE
    torch.save(bundle.state_dict, weights)
    metadata.write_text(json.dumps(bundle.metadata(), indent=1), encoding="utf-8")
    return weights, metadata


def _from_files(weights: bytes, metadata: bytes, source: str) -> ModelBundle:
    try:
        meta = json.loads(metadata)
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # JSON, pickle and zip errors alike: not our files
        raise CheckpointError(f"{source}: unreadable model files: {exc}") from exc
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{source}: not a geoverdict model ({FORMAT})")
    try:
        partitions = tuple(Partition.from_dict(p) for p in meta["partitions"])
        hierarchy = meta["hierarchy"]
        calibration, report = stored_calibration(meta.get("calibration"), source)
        bundle = ModelBundle(
            name=str(meta["name"]),
            spec=ModelSpec.from_dict(meta["spec"]),
            state_dict=dict(state),
            partitions=partitions,
            ancestors=None if hierarchy is None else np.asarray(hierarchy, dtype=np.int64),
            input_size=int(meta["input"]["size"]),
            resize=int(meta["input"]["resize"]),
            training=dict(meta.get("training") or {}),
            calibration=calibration,
            calibration_report=report,
            best_guess=GuessRule.parse(meta["best_guess"]) if "best_guess" in meta else None,
            baselines=dict(meta.get("baselines") or {}),
        )
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{source}: malformed metadata: {exc}") from exc
    if meta.get("model_version") != bundle.version:
        raise CheckpointError(
            f"{source}: weights or metadata changed since export (version "
            f"{meta.get('model_version')!r}, content {bundle.version!r})"
        )
    return bundle


def read_bundle(path: Path) -> ModelBundle:
    """A bundle from a .mar archive or a folder holding its files."""
    if path.is_dir():
        try:
            weights = (path / WEIGHTS_FILE).read_bytes()
            metadata = (path / METADATA_FILE).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"{path}: no model files: {exc.strerror or exc}") from exc
        return _from_files(weights, metadata, str(path))
    if zipfile.is_zipfile(path) and path.suffix == ".mar":
        try:
            with zipfile.ZipFile(path) as archive:
                return _from_files(
                    archive.read(WEIGHTS_FILE), archive.read(METADATA_FILE), str(path)
                )
        except (KeyError, zipfile.BadZipFile) as exc:
            raise CheckpointError(f"{path}: not a geoverdict model archive: {exc}") from exc
    raise CheckpointError(
        f"{path}: not a model archive (.mar) or a folder of its files; a training checkpoint "
        "is read by geoverdict_training.train.export.load_bundle"
    )
