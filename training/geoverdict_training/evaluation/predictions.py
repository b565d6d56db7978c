"""A predictor run over a whole dataset: every photo's best cell, its probability, the scenes and,
on request, its best guess (a rule of inference/best_guess.py), the losses, raw logits and
distributions, by manifest row.

Validation during training, `geoverdict evaluate --model`, `geoverdict calibrate` and
`geoverdict scenes propagate` read their photos through the DataLoader here; skipped photos are
counted, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
from geoverdict_training.inference.best_guess import GuessRule, guess_points
from geoverdict_training.inference.predictor import Predictor
from geoverdict_training.models.losses import multitask_loss


@dataclass(frozen=True)
class Predictions:
    """Per-photo results over a data loader, by manifest row."""

    rows: npt.NDArray[np.int64]  # (N,) rows of the photos that were not skipped
    gt: npt.NDArray[np.float64]  # (N, 2) ground-truth latitude, longitude
    points: npt.NDArray[np.float64] | None  # (N, 2) the best cell's point: latitude, longitude
    scenes: dict[str, npt.NDArray[np.float32]]  # scene set -> (N, n) probabilities
    skips: Skips
    losses: dict[str, float]  # head -> mean cross-entropy over the batches (when asked for)
    best: npt.NDArray[np.int64] | None = None  # (N,) best fine class
    top1: npt.NDArray[np.float64] | None = None  # (N,) its probability
    # (N,) probability of the fine class holding the photo's position, NaN where none does
    p_true: npt.NDArray[np.float64] | None = None
    logits: dict[str, npt.NDArray[np.float32]] | None = None  # head -> (N, n), when kept
    cells: npt.NDArray[np.float64] | None = None  # (N, n_fine) calibrated, when kept
    guesses: npt.NDArray[np.float64] | None = None  # (N, 2) best guesses, when a rule is given


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
    rule: GuessRule | None = None,
) -> Predictions:
    """Run the predictor over every batch; skipped photos are counted, not fatal.

    With `losses` (loss weights, {} for equal ones), also the loss of each head against the
    batches' labels, averaged over batches weighted by their size. With `keep_logits`, every
    head's raw logits (N, n), to fit temperatures on (memory: N times all heads' classes); with
    `keep_cells`, every photo's fine-cell distribution (N, n_fine); with `rule`, every photo's
    best guess by that rule.
    """
    skips = Skips("images")
    rows: list[torch.Tensor] = []
    gt: list[torch.Tensor] = []
    points: list[npt.NDArray[np.float64]] = []
    guesses: list[npt.NDArray[np.float64]] = []
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
            if rule is not None:
                guesses.append(guess_points(predictor.fine, cells.numpy(), rule))
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
        guesses=None if rule is None else np.concatenate([np.zeros((0, 2)), *guesses]),
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
    rule: GuessRule | None = None,
) -> Predictions:
    """Predict every photo of a manifest found under `images`, with a progress bar."""
    if batch_size < 1 or workers < 0:
        raise ConfigError(f"batch size must be >= 1 and workers >= 0, got {batch_size}, {workers}")
    labels = build_labels(manifest, predictor.partitions)
    dataset = ImageFolderDataset(manifest, labels, images, transform, min_side=min_side)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    return predict_loader(
        predictor,
        loader,
        torch.device(device),
        progress=progress,
        total=len(loader),
        keep_logits=keep_logits,
        keep_cells=keep_cells,
        rule=rule,
    )
