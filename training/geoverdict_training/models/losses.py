"""The multitask loss: a weighted sum of one cross-entropy per head, unlabelled samples masked;
a head may learn soft targets instead of its labels (haversine_smoothing.py)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.vocabulary import NO_LABEL

# A target of -1 means "no label for this head" (e.g. a geotagged photo without scene labels).


def _check_targets(logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> None:
    """Shapes and dtypes per head, then every label's range."""
    out_of_range = []
    for name, head_logits in logits.items():
        if name not in targets:
            raise TensorError(f"no targets for head {name!r}; got {sorted(targets)}")
        target = targets[name]
        if head_logits.ndim != 2 or target.shape != head_logits.shape[:1]:
            raise TensorError(
                f"head {name!r}: logits {tuple(head_logits.shape)} need (B, n) and targets (B,), "
                f"got targets {tuple(target.shape)}"
            )
        if target.dtype != torch.long:
            raise TensorError(f"head {name!r}: targets must be int64, got {target.dtype}")
        out_of_range.append(((target < NO_LABEL) | (target >= head_logits.shape[1])).any())
    if bool(torch.stack(out_of_range).any()):  # one sync for all heads
        bad = [name for name, flag in zip(logits, out_of_range, strict=True) if flag]
        raise TensorError(f"targets out of range [{NO_LABEL}, n_classes) for heads {bad}")


def multitask_loss(
    logits: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
    soft: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over heads of weight * mean cross-entropy over the samples labelled for that head.

    logits: head -> (B, n_head); targets: head -> (B,) int64, NO_LABEL (-1) where unlabelled;
    extra target heads are ignored. weights: head -> weight, 1 for heads not named (the paper's
    equal weights). soft: head -> (B, n_head) target distributions, learnt instead of that
    head's labels by the samples labelled for it. A head with no labelled sample in the batch
    contributes exactly 0 (and zero gradient), never NaN. Returns (total, head -> detached loss
    for logging).
    """
    if not logits:
        raise TensorError("no heads: logits is empty")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(logits))
    if unknown:
        raise ConfigError(f"loss weights: unknown heads {unknown}; heads: {list(logits)}")
    negative = {name: w for name, w in weights.items() if w < 0}
    if negative:
        raise ConfigError(f"loss weights: must be >= 0, got {negative}")
    _check_targets(logits, targets)

    total = torch.zeros((), device=next(iter(logits.values())).device)
    per_head: dict[str, torch.Tensor] = {}
    for name, head_logits in logits.items():
        target = targets[name]  # (B,)
        labelled = (target != NO_LABEL).sum().clamp(min=1)  # avoids 0 / 0 on all-masked heads
        if soft is not None and name in soft:
            if soft[name].shape != head_logits.shape:
                raise TensorError(
                    f"head {name!r}: soft targets {tuple(soft[name].shape)} must match the "
                    f"logits {tuple(head_logits.shape)}"
                )
            per_sample = -(soft[name] * head_logits.float().log_softmax(dim=-1)).sum(dim=-1)
            summed = torch.where(target != NO_LABEL, per_sample, 0.0).sum()
        else:
            summed = nn.functional.cross_entropy(
                head_logits, target, ignore_index=NO_LABEL, reduction="sum"
            )
        loss = summed / labelled
        per_head[name] = loss.detach()
        total = total + weights.get(name, 1.0) * loss
    return total, per_head
