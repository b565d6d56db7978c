"""The optimizer step that `train` takes and the training benchmarks time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from geoverdict_training.data.datasets import Batch
from geoverdict_training.train.step import StepLosses, Stepper, grad_scaler

CPU = torch.device("cpu")


class TwoHeads(nn.Module):
    """Logits of two heads from a flattened image: what GeoModel hands the loss."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cells = nn.Linear(12, 5)
        self.scene = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)  # (B, 12)
        return {"cells": self.cells(flat), "scene_s3": self.scene(flat)}


def batches(n: int, size: int) -> Iterator[Batch]:
    generator = torch.Generator().manual_seed(1)
    for _ in range(n):
        images = torch.randn(size, 3, 2, 2, generator=generator)  # (B, 3, 2, 2)
        labels = {
            "cells": torch.randint(0, 5, (size,), generator=generator),
            "scene_s3": torch.randint(0, 3, (size,), generator=generator),
        }
        yield Batch(images, labels, {})


def stepper(net: nn.Module, grad_accum: int = 1) -> Stepper:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    return Stepper(net, optimizer, grad_scaler(CPU, None), CPU, grad_accum=grad_accum)


def whole(parts: Iterator[Batch]) -> Iterator[Batch]:
    chunks = list(parts)
    images = torch.cat([b.images for b in chunks])
    labels = {k: torch.cat([b.labels[k] for b in chunks]) for k in chunks[0].labels}
    yield Batch(images, labels, {})


def test_accumulated_micro_batches_step_as_one_batch_of_their_size() -> None:
    accumulated, single = TwoHeads(), TwoHeads()
    losses = stepper(accumulated, grad_accum=4)(batches(4, 2))
    one = stepper(single)(whole(batches(4, 2)))
    for a, b in zip(accumulated.parameters(), single.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert losses.images == one.images == 8
    assert losses.losses["loss"] == pytest.approx(one.losses["loss"], rel=1e-5)


def test_a_step_reports_the_mean_loss_of_every_head_and_their_sum() -> None:
    losses = stepper(TwoHeads(), grad_accum=2)(batches(2, 3))
    assert isinstance(losses, StepLosses) and losses.images == 6
    assert set(losses.losses) == {"loss_cells", "loss_scene_s3", "loss"}
    heads = losses.losses["loss_cells"] + losses.losses["loss_scene_s3"]
    assert losses.losses["loss"] == pytest.approx(heads)


def test_a_step_reads_as_many_batches_as_it_accumulates() -> None:
    stream = batches(5, 2)
    stepper(TwoHeads(), grad_accum=3)(stream)
    assert len(list(stream)) == 2
