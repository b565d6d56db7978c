"""The multitask model of the paper: one backbone, a linear head per partition and per scene set.

Müller-Budack et al. (ECCV 2018) learn where (S2 cells at several resolutions) and what kind of
scene (Places365 hierarchy) at once; the scene heads share the features that locate the photo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.models.backbones import Pretrained, create_backbone, list_backbones
from geoverdict_training.vocabulary import SCENE_CLASSES, SCENE_PREFIX, SCENE_SETS


@dataclass(frozen=True)
class ModelSpec:
    """All that is needed to rebuild a GeoModel; saved into every checkpoint."""

    backbone: str
    # (name, number of classes) per partition, ordered coarse -> fine; empty for a scene-only net.
    partitions: tuple[tuple[str, int], ...]
    scenes: tuple[str, ...] = SCENE_SETS
    dropout: float = 0.0  # on the pooled features, before every head

    def __post_init__(self) -> None:
        if self.backbone not in list_backbones():
            raise ConfigError(
                f"backbone: unknown {self.backbone!r}; known: {', '.join(list_backbones())}"
            )
        names = self.partition_names
        for name, num_classes in self.partitions:
            if (
                not isinstance(name, str)
                or not name.isidentifier()
                or name.startswith(SCENE_PREFIX)
            ):
                raise ConfigError(
                    f"partitions: name {name!r} must be an identifier not starting "
                    f"with {SCENE_PREFIX!r}"
                )
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
                raise ConfigError(f"partitions: {name} must have >= 1 classes, got {num_classes!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"partitions: names must be unique, got {names}")
        unknown = [scene for scene in self.scenes if scene not in SCENE_CLASSES]
        if unknown or len(set(self.scenes)) != len(self.scenes):
            raise ConfigError(
                f"scenes: must be distinct names among {sorted(SCENE_CLASSES)}, "
                f"got {list(self.scenes)}"
            )
        if not self.partitions and not self.scenes:
            raise ConfigError("partitions and scenes are both empty: the model would have no head")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")

    @property
    def partition_names(self) -> list[str]:
        """Partition head names, coarse -> fine."""
        return [name for name, _ in self.partitions]

    @property
    def heads(self) -> dict[str, int]:
        """Head name -> number of classes: partitions (coarse -> fine), then scene_s3, ..."""
        heads = dict(self.partitions)
        heads.update({SCENE_PREFIX + scene: SCENE_CLASSES[scene] for scene in self.scenes})
        return heads

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready form (lists instead of tuples)."""
        data = asdict(self)
        data["partitions"] = [[name, n] for name, n in self.partitions]
        data["scenes"] = list(self.scenes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of to_dict; unknown or missing keys raise ConfigError naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model spec: unknown keys {unknown}; known: {sorted(known)}")
        if "backbone" not in data or "partitions" not in data:
            raise ConfigError("model spec: 'backbone' and 'partitions' are required")
        try:
            partitions = tuple((str(name), n) for name, n in data["partitions"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"partitions: expected [name, number of classes] pairs, got {data['partitions']!r}"
            ) from exc
        kwargs = {**data, "partitions": partitions}
        if "scenes" in data:
            kwargs["scenes"] = tuple(data["scenes"])
        return cls(**kwargs)


class GeoModel(nn.Module):
    """Backbone -> pooled features -> dropout -> one linear head per partition and scene set."""

    def __init__(self, spec: ModelSpec, pretrained: Pretrained = False) -> None:
        super().__init__()
        self.spec = spec
        self.backbone, feature_dim = create_backbone(spec.backbone, pretrained)
        self.dropout = nn.Dropout(spec.dropout)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(feature_dim, n) for name, n in spec.heads.items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) images -> head name -> (B, n_classes) logits."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise TensorError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        features = self.dropout(self.backbone(x))  # (B, C)
        return {name: head(features) for name, head in self.heads.items()}
