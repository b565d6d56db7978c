"""One optimizer step, as `geoverdict train` takes it and as the training benchmarks time it.

`grad_accum` micro-batches, each forward pass in autocast (bf16 or fp16 on a GPU), the loss
scaled by the GradScaler (fp16 only) and divided by `grad_accum` so the step's gradient is the
mean over its micro-batches; under DistributedDataParallel the gradients are reduced once, on
the last micro-batch (`no_sync` before). Then the scaler steps the optimizer (skipping a step
whose gradients overflowed in fp16). The learning-rate schedule is the caller's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from geoverdict_training.data.datasets import COORDS, Batch
from geoverdict_training.models.haversine_smoothing import HaversineSmoothing
from geoverdict_training.models.losses import multitask_loss


@dataclass(frozen=True)
class StepLosses:
    """What one step trained on: its mean loss ("loss") and each head's ("loss_<head>") over
    its micro-batches, and how many images it saw."""

    losses: dict[str, float]
    images: int


@dataclass(frozen=True)
class Stepper:
    """Takes optimizer steps of `net` (the model as trained: wrapped by DDP or torch.compile
    where it is) on batches read from an iterator."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    autocast: torch.dtype | None = None  # None: fp32
    channels_last: bool = False  # NHWC batches (the model converted by the caller)
    grad_accum: int = 1
    loss_weights: Mapping[str, float] = field(default_factory=dict)
    distributed: bool = False  # `net` is DistributedDataParallel (perhaps compiled)
    smoothing: HaversineSmoothing | None = None  # soft targets for the partition heads

    def __call__(self, batches: Iterator[Batch]) -> StepLosses:
        """Read `grad_accum` batches and take one optimizer step."""
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        images = 0
        for micro in range(self.grad_accum):
            batch = next(batches)
            last = micro == self.grad_accum - 1
            with self._reduce(last):
                loss, per_head = self._forward(batch)
                self.scaler.scale(loss / self.grad_accum).backward()
            for head, value in per_head.items():
                key = f"loss_{head}"
                sums[key] = sums.get(key, 0.0) + float(value) / self.grad_accum
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / self.grad_accum
            images += batch.size
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return StepLosses(sums, images)

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = batch.images.to(self.device, non_blocking=True)  # (B, 3, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # NHWC in memory
        targets = {k: v.to(self.device, non_blocking=True) for k, v in batch.labels.items()}
        soft = None
        if self.smoothing is not None:
            soft = self.smoothing.targets(batch.labels[COORDS], self.device)
        with autocast(self.device, self.autocast):
            logits = self.net(x)  # head -> (B, n_head)
            return multitask_loss(logits, targets, self.loss_weights, soft)

    def _reduce(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP's gradient all-reduce on the last micro-batch only."""
        if last or not self.distributed:
            return contextlib.nullcontext()
        return self.net.no_sync()  # type: ignore[operator]


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Loss scaling where fp16 needs it; a scaler that passes everything through otherwise."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision in `dtype`, or nothing (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
