"""Hierarchical prediction: a fine cell's probability is the product over partitions.

The paper's hierarchical model scores a fine cell f as p(f) = prod_j p_j(ancestor_j(f)), the
product of the softmax PROBABILITIES of f's ancestor in every partition (coarse -> fine). The
hierarchy comes as an int64 array `ancestors` of shape (n_fine, n_partitions): column j holds
f's ancestor class in partition j, the last column f itself, -1 where partition j has no cell
containing f.

Two choices, both here on purpose:
- A missing ancestor (-1) contributes a factor 1: that partition says nothing about f. This
  favours such cells slightly over cells whose ancestor gets a probability below 1; the
  alternative (dropping them) would make their regions unreachable.
- The product is renormalised over the fine classes so that it sums to 1 per photo. The ranking
  is the product's; only the scale changes, so probabilities read as probabilities.
The product is computed as a sum of log-probabilities, so three partitions of small
probabilities do not underflow to 0 / 0. A calibrated model divides that sum by its hierarchy
temperature before renormalising (calibration.py): the ranking stays, the sureness changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from geoverdict_training.exceptions import ConfigError, TensorError

NO_ANCESTOR = -1


def _ancestors_tensor(
    ancestors: torch.Tensor | np.ndarray, sizes: Sequence[int], device: torch.device
) -> torch.Tensor:
    """Validated (n_fine, n_partitions) int64 tensor on `device`."""
    table = torch.as_tensor(ancestors, device=device)
    n_fine = sizes[-1]
    if table.dtype not in (torch.int64, torch.int32) or table.shape != (n_fine, len(sizes)):
        raise TensorError(
            f"ancestors must be an integer array of shape (n_fine={n_fine}, "
            f"n_partitions={len(sizes)}), got {table.dtype} {tuple(table.shape)}"
        )
    table = table.long()
    if not torch.equal(table[:, -1], torch.arange(n_fine, device=device)):
        raise TensorError("ancestors: the last column must be the fine class itself, 0..n_fine-1")
    upper = torch.tensor(sizes, device=device)  # (P,)
    if bool(((table < NO_ANCESTOR) | (table >= upper)).any()):
        raise TensorError(f"ancestors: column j must lie in [-1, n_j), sizes {list(sizes)}")
    return table


def _log_product(
    log_probs: Sequence[torch.Tensor], ancestors: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Per-partition (B, n_j) log-probabilities -> (B, n_fine) sum over partitions of the log
    probability of each fine class's ancestor (not renormalised)."""
    if not log_probs:
        raise TensorError("no partitions given")
    batch = log_probs[0].shape[0]
    if any(lp.ndim != 2 or lp.shape[0] != batch for lp in log_probs):
        shapes = [tuple(lp.shape) for lp in log_probs]
        raise TensorError(f"partition scores must all be (B, n_j) with the same B, got {shapes}")
    sizes = [lp.shape[1] for lp in log_probs]
    table = _ancestors_tensor(ancestors, sizes, log_probs[0].device)  # (n_fine, P)
    score = torch.zeros(batch, sizes[-1], device=log_probs[0].device)  # (B, n_fine)
    for j, lp in enumerate(log_probs):
        column = table[:, j]  # (n_fine,)
        factor = lp[:, column.clamp(min=0)]  # (B, n_fine): log p_j(ancestor_j(f))
        score = score + torch.where(column >= 0, factor, 0.0)  # log 1 = 0 where none
    return score


def hierarchical_scores(
    partition_logits: Sequence[torch.Tensor], ancestors: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Per-partition logits (B, n_j), coarse -> fine -> (B, n_fine) log of the product of the
    ancestors' probabilities: logits of the hierarchical prediction."""
    return _log_product(
        [logits.float().log_softmax(dim=-1) for logits in partition_logits], ancestors
    )


def hierarchical_probabilities(
    partition_logits: Sequence[torch.Tensor],
    ancestors: torch.Tensor | np.ndarray,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-partition logits (B, n_j), coarse -> fine -> p(fine cell) (B, n_fine), rows sum to 1;
    the log product is divided by `temperature` before renormalising."""
    return (hierarchical_scores(partition_logits, ancestors) / temperature).softmax(dim=-1)


def hierarchical_probabilities_from_probs(
    partition_probs: Sequence[torch.Tensor],
    ancestors: torch.Tensor | np.ndarray,
    temperature: float = 1.0,
) -> torch.Tensor:
    """As hierarchical_probabilities, from probabilities (e.g. five_crop_probabilities')."""
    tiny = torch.finfo(torch.float32).tiny  # log(0) would make a whole row -inf, then NaN
    log_probs = [p.float().clamp(min=tiny).log() for p in partition_probs]
    return (_log_product(log_probs, ancestors) / temperature).softmax(dim=-1)


def five_crop_probabilities(
    model: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], crops: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Crops (B, K, 3, H, W) -> head -> (B, n) probabilities: max over the K crops of each softmax.

    As in the GeoEstimation reference (torchvision's FiveCrop gives K = 5). Each maximum is
    renormalised to sum to 1; the hierarchical product is unchanged by that (it renormalises).
    """
    if crops.ndim != 5:
        raise TensorError(f"expected crops of shape (B, K, 3, H, W), got {tuple(crops.shape)}")
    batch, num_crops = crops.shape[:2]
    logits = model(crops.flatten(0, 1))  # head -> (B * K, n)
    probabilities = {}
    for name, head_logits in logits.items():
        per_crop = head_logits.float().softmax(dim=-1).unflatten(0, (batch, num_crops))  # (B, K, n)
        best = per_crop.amax(dim=1)  # (B, n)
        probabilities[name] = best / best.sum(dim=-1, keepdim=True)
    return probabilities


class TopK(NamedTuple):
    """The k most probable classes per row, most probable first."""

    indices: torch.Tensor  # (B, k) int64
    probabilities: torch.Tensor  # (B, k)


def top_k(probabilities: torch.Tensor, k: int) -> TopK:
    """Top k of (B, n) probabilities; k is capped at n (a small partition has few cells)."""
    if probabilities.ndim != 2:
        raise TensorError(f"expected (B, n) probabilities, got {tuple(probabilities.shape)}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=-1)
    return TopK(indices=indices, probabilities=values)
