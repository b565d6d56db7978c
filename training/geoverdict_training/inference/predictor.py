"""From images to probabilities: the model, its hierarchy and its classes' points, in one object.

Validation during training, `geoverdict evaluate --model`, `geoverdict scenes propagate`, the
model handler and `geoverdict locate` all predict through `Predictor`, so they cannot disagree;
a calibrated model's temperatures (calibration.py) are applied here, so all of them get
calibrated probabilities. Predicting a whole dataset is evaluation/predictions.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.inference.hierarchical import (
    five_crop_probabilities,
    hierarchical_probabilities,
    hierarchical_probabilities_from_probs,
)
from geoverdict_training.vocabulary import SCENE_PREFIX

Model = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class Output:
    """Probabilities for a batch of B images."""

    cells: torch.Tensor | None  # (B, n_fine) hierarchical; None for a scene-only model
    scenes: dict[str, torch.Tensor]  # scene set (s3, ...) -> (B, n) softmax
    # head -> (B, n_head): what the model said, before calibration (for five crops, the log of
    # each head's calibrated maximum over the crops)
    logits: Mapping[str, torch.Tensor]


class Predictor:
    """A model (head name -> logits) with its partitions (coarse -> fine) and their hierarchy."""

    def __init__(
        self,
        model: Model,
        partitions: Sequence[Partition],
        ancestors: npt.NDArray[np.int64] | None,
        scenes: Sequence[str],
        calibration: Calibration | None = None,
    ) -> None:
        shape = (len(partitions[-1]), len(partitions)) if partitions else None
        if partitions and (ancestors is None or ancestors.shape != shape):
            raise ConfigError("the hierarchy does not fit the partitions")
        self.model = model
        self.partitions = tuple(partitions)
        self.ancestors = None if ancestors is None else torch.as_tensor(ancestors)
        self.scenes = tuple(scenes)
        self.calibration = calibration or Calibration()

    def with_calibration(self, calibration: Calibration) -> Predictor:
        """The same model and classes with other temperatures."""
        ancestors = None if self.ancestors is None else self.ancestors.numpy()
        return Predictor(self.model, self.partitions, ancestors, self.scenes, calibration)

    @property
    def fine(self) -> Partition | None:
        """The finest partition, whose classes are the answers; None for a scene-only model."""
        return self.partitions[-1] if self.partitions else None

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Output:
        """(B, 3, H, W) normalised images -> probabilities. Crops (B, K, 3, H, W), as
        images.five_crop_transform makes them: each head's softmax is the maximum over the K
        crops (the GeoEstimation reference), then the hierarchical product as usual."""
        if images.ndim == 5:
            calibrated = five_crop_probabilities(
                lambda crops: self.calibration.scale(self.model(crops)), images
            )
            return self._from_probabilities(calibrated)
        return self.from_logits(self.model(images))

    @torch.no_grad()
    def logits(
        self, images: torch.Tensor, autocast: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) -> the model's raw logits (head -> (B, n)) in fp32. With `autocast`
        (bf16 on a GPU) only the forward pass runs in it: calibration, the softmax and the
        hierarchical product then run in fp32 (from_logits)."""
        if autocast is None:
            return dict(self.model(images))
        with torch.autocast(images.device.type, dtype=autocast):
            logits = self.model(images)
        return {head: z.float() for head, z in logits.items()}

    def from_logits(self, logits: Mapping[str, torch.Tensor]) -> Output:
        """Probabilities from the model's raw logits (head -> (B, n)), calibrated."""
        scaled = self.calibration.scale(logits)
        cells = None
        if self.partitions and self.ancestors is not None:
            ancestors = self.ancestors.to(next(iter(logits.values())).device)
            cells = hierarchical_probabilities(
                [scaled[p.name] for p in self.partitions], ancestors, self.calibration.hierarchy
            )
        scenes = {s: scaled[SCENE_PREFIX + s].float().softmax(dim=-1) for s in self.scenes}
        return Output(cells=cells, scenes=scenes, logits=logits)

    def _from_probabilities(self, probabilities: Mapping[str, torch.Tensor]) -> Output:
        cells = None
        if self.partitions and self.ancestors is not None:
            ancestors = self.ancestors.to(next(iter(probabilities.values())).device)
            cells = hierarchical_probabilities_from_probs(
                [probabilities[p.name] for p in self.partitions],
                ancestors,
                self.calibration.hierarchy,
            )
        scenes = {s: probabilities[SCENE_PREFIX + s] for s in self.scenes}
        # Log-probabilities are logits whose softmax is the probabilities (losses stay valid).
        tiny = torch.finfo(torch.float32).tiny
        logits = {head: p.clamp(min=tiny).log() for head, p in probabilities.items()}
        return Output(cells=cells, scenes=scenes, logits=logits)

    def best_points(self, cells: torch.Tensor) -> tuple[npt.NDArray[np.float64], ...]:
        """(B, n_fine) probabilities -> latitude, longitude (B,) of each row's best class."""
        fine = self.fine
        if fine is None:
            raise ConfigError("a scene-only model predicts no location")
        best = cells.argmax(dim=-1).cpu().numpy()  # (B,)
        return fine.lat_mean[best], fine.lon_mean[best]
