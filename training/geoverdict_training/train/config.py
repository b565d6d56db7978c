"""The training configuration: one typed dataclass, read from YAML plus `key=value` overrides.

The final config is saved as YAML in the run folder and as a dict inside every checkpoint, so a
checkpoint always says how it was made. A key that does not exist or a value of the wrong type
is an error naming the key; so is a value out of range.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo.partitions import PartitionSpec
from geoverdict_training.vocabulary import SCENE_CLASSES, SCENE_SETS

OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
DECODERS = ("auto", "pillow", "device")


@dataclass
class TrainConfig:
    """Everything a training run depends on; defaults are the seed paper's where it has one."""

    # --- data: a manifest (public meta-file format) over an image folder or msgpack shards
    manifest: str = ""
    images: str = ""  # folder the manifest's IMG_IDs are relative to
    shards: str = ""  # or: a folder of MP-16-style msgpack shards (streamed; `images` unused)
    val_manifest: str = ""  # explicit validation photos; else the manifest is split by AUTHOR
    val_images: str = ""  # their folder (default: `images`)
    val_fraction: float = 0.15  # share of photos whose photographers are held out
    split_seed: int = 0
    limit: int = 0  # use only the first N photos of the manifest (0: all), for smoke runs
    # --- model
    backbone: str = "resnet50"
    pretrained: bool = True  # ImageNet weights (local files only, see backbones.py)
    scene_only: bool = False  # the helper scene network: scene heads, no geo heads
    partitions: list[list[int]] = field(
        default_factory=lambda: [[50, 5000], [50, 2000], [50, 1000]]  # coarse -> fine
    )
    scenes: list[str] = field(default_factory=lambda: list(SCENE_SETS))
    dropout: float = 0.0
    # fit temperatures on the validation photos at the last step (inference/calibration.py)
    calibrate: bool = True
    freeze_backbone: bool = False  # train the heads (and `trainable`) only
    trainable: list[str] = field(default_factory=list)  # backbone parameter prefixes kept trained
    loss_weights: dict[str, float] = field(default_factory=dict)  # head -> weight (default 1)
    # Haversine label smoothing (models/haversine_smoothing.py): one tau in km per partition,
    # coarse -> fine; 0 or empty: the hard labels (the seed paper's).
    label_smoothing_km: list[float] = field(default_factory=list)
    input_size: int = 224  # crop side
    resize: int = 256  # short side before the centre crop (evaluation)
    # --- optimisation
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    lr_step: int = 0  # multiply lr by lr_gamma every lr_step optimizer steps (0: constant)
    lr_gamma: float = 0.5
    batch_size: int = 32  # per process and micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000  # optimizer steps
    precision: str = "auto"  # autocast on GPU: bf16 where supported, else fp16; CPU: fp32
    device: str = "auto"
    # Where training photos are decoded and augmented. "pillow": in the loader's workers (the
    # CPU path); "device": batched on the training device, the workers only read bytes
    # (device_batches.py); "auto": "device" on a GPU, "pillow" on a CPU.
    decode: str = "auto"
    channels_last: bool = True  # NHWC model and batches on a GPU (tensor cores); no effect on CPU
    # torch.compile the network. Off until `python -m benchmarks --device cuda` shows it pays for
    # its compile time on the run's GPU (not measured yet).
    compile: bool = False
    # --- bookkeeping
    out_dir: str = "runs/default"
    eval_every: int = 500  # steps between validations (0: only at the end)
    checkpoint_every: int = 500  # steps between checkpoints (the last step always saves)
    log_every: int = 10
    workers: int = 4  # DataLoader workers per process
    seed: int = 0
    resume: str = ""  # a checkpoint to continue from, at its step
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        _check_types(self)
        self._check_values()

    def _check_values(self) -> None:
        positive = ("batch_size", "grad_accum", "max_steps", "input_size", "resize", "log_every")
        for key in positive:
            _require(key, getattr(self, key) >= 1, "must be >= 1")
        for key in ("eval_every", "checkpoint_every", "workers", "limit", "lr_step"):
            _require(key, getattr(self, key) >= 0, "must be >= 0")
        _require("lr", self.lr > 0, "must be > 0")
        _require("weight_decay", self.weight_decay >= 0, "must be >= 0")
        _require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")
        _require("lr_gamma", 0 < self.lr_gamma <= 1, "must be in (0, 1]")
        _require("dropout", 0 <= self.dropout < 1, "must be in [0, 1)")
        _require("val_fraction", 0 <= self.val_fraction < 1, "must be in [0, 1)")
        _require("resize", self.resize >= self.input_size, "must be >= input_size")
        _require("optimizer", self.optimizer in OPTIMIZERS, f"must be one of {OPTIMIZERS}")
        _require("precision", self.precision in PRECISIONS, f"must be one of {PRECISIONS}")
        _require("device", self.device in DEVICES, f"must be one of {DEVICES}")
        _require("decode", self.decode in DECODERS, f"must be one of {DECODERS}")
        _require("manifest", bool(self.manifest), "is required")
        _require("images", bool(self.images or self.shards), "is required (or shards)")
        unknown = [s for s in self.scenes if s not in SCENE_CLASSES]
        _require(
            "scenes",
            not unknown and len(set(self.scenes)) == len(self.scenes),
            f"must be distinct names among {sorted(SCENE_CLASSES)}",
        )
        _require(
            "scenes",
            bool(self.scenes) or not self.scene_only,
            "must not be empty for a scene-only model",
        )
        if not self.scene_only:
            _require("partitions", bool(self.partitions), "must not be empty (or scene_only)")
            for pair in self.partitions:
                _require("partitions", len(pair) == 2, "must be [tau_min, tau_max] pairs")
            try:
                self.partition_specs()
            except ConfigError as exc:
                raise ConfigError(f"config key 'partitions': {exc}") from exc
        smoothing = self.label_smoothing_km
        _require(
            "label_smoothing_km",
            not smoothing or (len(smoothing) == len(self.partitions) and min(smoothing) >= 0),
            f"must be one tau >= 0 (km) per partition ({len(self.partitions)}), or empty",
        )

    def partition_specs(self) -> list[PartitionSpec]:
        """The partitions' thresholds, coarse -> fine; none for a scene-only model."""
        if self.scene_only:
            return []
        return [PartitionSpec(tau_min, tau_max) for tau_min, tau_max in self.partitions]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise ConfigError naming them."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
            )
        return cls(**{str(k): v for k, v in data.items()})

    def save(self, path: Path) -> None:
        """Write the config as YAML."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _require(key: str, ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: {message}")


def _check_types(config: TrainConfig) -> None:
    """Check (and lightly coerce: int -> float, '1e-4' -> 1e-4) every field against its type."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        setattr(config, f.name, _coerce(f.name, value, hints[f.name]))


def _coerce(key: str, value: Any, expected: Any) -> Any:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    wrong = ConfigError(
        f"config key {key!r}: expected {_type_name(expected)}, got {type(value).__name__} {value!r}"
    )
    if expected is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if expected is float:
        # YAML 1.1 (PyYAML) reads 1e-4 as a string; a number in a string is still a number.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise wrong
        return value
    if origin is list:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise wrong
        return [_coerce(key, item, args[0]) for item in value]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise wrong
        return {_coerce(key, k, args[0]): _coerce(key, v, args[1]) for k, v in value.items()}
    raise ConfigError(f"config key {key!r}: unsupported field type {expected}")  # a bug here


def _type_name(expected: Any) -> str:
    if isinstance(expected, type) and not isinstance(expected, types.GenericAlias):
        return expected.__name__
    return str(expected)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings -> {key: value}; values are YAML (`lr=0.1`, `scenes=[s3]`)."""
    parsed: dict[str, Any] = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"an override is key=value, got {text!r}")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"config key {key.strip()!r}: not a YAML value: {raw!r}") from exc
    return parsed


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config of a YAML file (or the defaults) with `key=value` overrides applied."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ConfigError(f"config {path} must be a mapping of keys to values")
        data.update(loaded or {})
    data.update(parse_overrides(overrides))
    return TrainConfig.from_dict(data)
