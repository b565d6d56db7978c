"""From images to probabilities: the model, its hierarchy and its classes' points, in one object.

Validation during training, `geoverdict evaluate --model`, `geoverdict scenes propagate` and the
TorchServe handler all predict through `Predictor`, so they cannot disagree; a calibrated model's
temperatures (calibration.py) are applied here, so all of them get calibrated probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from geoverdict_training.data.datasets import (
    COORDS,
    ROW,
    Batch,
    ImageFolderDataset,
    Transform,
    collate,
)
from geoverdict_training.data.labels import build_labels
from geoverdict_training.data.manifest import Manifest
from geoverdict_training.data.skips import Skips
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.inference.hierarchical import (
    five_crop_probabilities,
    hierarchical_probabilities,
    hierarchical_probabilities_from_probs,
)
from geoverdict_training.models.losses import multitask_loss
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


@dataclass(frozen=True)
class Predictions:
    """Per-photo results over a data loader, by manifest row."""

    rows: npt.NDArray[np.int64]  # (N,) rows of the photos that were not skipped
    gt: npt.NDArray[np.float64]  # (N, 2) ground-truth latitude, longitude
    points: npt.NDArray[np.float64] | None  # (N, 2) predicted latitude, longitude
    scenes: dict[str, npt.NDArray[np.float32]]  # scene set -> (N, n) probabilities
    skips: Skips
    losses: dict[str, float]  # head -> mean cross-entropy over the batches (when asked for)
    best: npt.NDArray[np.int64] | None = None  # (N,) best fine class
    top1: npt.NDArray[np.float64] | None = None  # (N,) its probability
    # (N,) probability of the fine class holding the photo's position, NaN where none does
    p_true: npt.NDArray[np.float64] | None = None
    logits: dict[str, npt.NDArray[np.float32]] | None = None  # head -> (N, n), when kept
    cells: npt.NDArray[np.float64] | None = None  # (N, n_fine) calibrated, when kept


def _cat(chunks: list[torch.Tensor], dtype: type[np.generic]) -> npt.NDArray[Any] | None:
    return torch.cat(chunks).numpy().astype(dtype) if chunks else None


def predict_loader(
    predictor: Predictor,
    batches: Iterable[Batch],
    device: torch.device,
    *,
    progress: bool = False,
    total: int | None = None,
    losses: Mapping[str, float] | None = None,
    keep_logits: bool = False,
    keep_cells: bool = False,
) -> Predictions:
    """Run the predictor over every batch; skipped photos are counted, not fatal.

    With `losses` (loss weights, {} for equal ones), also the loss of each head against the
    batches' labels, averaged over batches weighted by their size. With `keep_logits`, every
    head's raw logits (N, n), to fit temperatures on (memory: N times all heads' classes); with
    `keep_cells`, every photo's fine-cell distribution (N, n_fine).
    """
    skips = Skips("images")
    rows: list[torch.Tensor] = []
    gt: list[torch.Tensor] = []
    points: list[npt.NDArray[np.float64]] = []
    scenes: dict[str, list[torch.Tensor]] = {s: [] for s in predictor.scenes}
    geo: dict[str, list[torch.Tensor]] = {"best": [], "top1": [], "p_true": [], "cells": []}
    kept: dict[str, list[torch.Tensor]] = {}
    loss_sums: dict[str, float] = {}
    for batch in tqdm(batches, total=total, disable=not progress, desc="predict", unit="batch"):
        skips.seen += batch.size + sum(batch.skipped.values())
        for reason, n in batch.skipped.items():
            skips.skip(reason, n)
        if batch.size == 0:
            continue
        images = batch.images.to(device, non_blocking=True)
        output = predictor(images)
        if losses is not None:
            targets = {k: v.to(device) for k, v in batch.labels.items()}
            _, per_head = multitask_loss(output.logits, targets, losses)
            for head, value in per_head.items():
                loss_sums[head] = loss_sums.get(head, 0.0) + float(value) * batch.size
        rows.append(batch.labels[ROW])
        gt.append(batch.labels[COORDS])
        if output.cells is not None and predictor.fine is not None:
            points.append(np.stack(predictor.best_points(output.cells), axis=1))
            cells = output.cells.double().cpu()  # (B, n_fine)
            top1, best = cells.max(dim=-1)
            truth = batch.labels[predictor.fine.name]  # (B,) -1 where no fine class
            p_true = cells.gather(1, truth.clamp(min=0)[:, None])[:, 0]
            geo["best"].append(best)
            geo["top1"].append(top1)
            geo["p_true"].append(torch.where(truth >= 0, p_true, torch.nan))
            if keep_cells:
                geo["cells"].append(cells)
        if keep_logits:
            for head, z in output.logits.items():
                kept.setdefault(head, []).append(z.float().cpu())
        for name, probabilities in output.scenes.items():
            scenes[name].append(probabilities.float().cpu())
    return Predictions(
        rows=torch.cat(rows).numpy() if rows else np.zeros(0, dtype=np.int64),
        gt=torch.cat(gt).double().numpy() if gt else np.zeros((0, 2)),
        points=np.concatenate(points) if points else None,
        scenes={
            name: torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), dtype=np.float32)
            for name, chunks in scenes.items()
        },
        skips=skips,
        losses={
            head: total / max(sum(r.numel() for r in rows), 1) for head, total in loss_sums.items()
        },
        best=_cat(geo["best"], np.int64),
        top1=_cat(geo["top1"], np.float64),
        p_true=_cat(geo["p_true"], np.float64),
        logits={head: torch.cat(chunks).numpy() for head, chunks in kept.items()}
        if keep_logits
        else None,
        cells=_cat(geo["cells"], np.float64),
    )


def predict_manifest(
    predictor: Predictor,
    transform: Transform,
    manifest: Manifest,
    images: Path,
    *,
    min_side: int = 256,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    device: torch.device | str = "cpu",
    keep_logits: bool = False,
    keep_cells: bool = False,
) -> Predictions:
    """Predict every photo of a manifest found under `images`, with a progress bar."""
    if batch_size < 1 or workers < 0:
        raise ConfigError(f"batch size must be >= 1 and workers >= 0, got {batch_size}, {workers}")
    labels = build_labels(manifest, predictor.partitions)
    dataset = ImageFolderDataset(manifest, labels, images, transform, min_side=min_side)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    return predict_loader(
        predictor, loader, torch.device(device), progress=progress, total=len(loader),
        keep_logits=keep_logits, keep_cells=keep_cells,
    )  # fmt: skip
