"""multitask_loss: sum of per-head cross-entropies, unlabelled samples (-1) masked out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.models.losses import NO_LABEL, multitask_loss


def _logits(batch: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "cells": torch.randn(batch, 5, generator=generator, requires_grad=True),
        "scene_s3": torch.randn(batch, 3, generator=generator, requires_grad=True),
    }


def test_fully_labelled_heads_sum_plain_cross_entropies() -> None:
    logits = _logits()
    targets = {"cells": torch.tensor([0, 4, 2, 1]), "scene_s3": torch.tensor([2, 0, 1, 1])}
    total, per_head = multitask_loss(logits, targets)

    with torch.no_grad():
        expected = {
            name: nn.functional.cross_entropy(logits[name], targets[name]) for name in logits
        }
    for name in logits:
        assert per_head[name] == pytest.approx(float(expected[name]))
    assert total.item() == pytest.approx(float(sum(expected.values())))


def test_a_masked_sample_does_not_change_the_loss() -> None:
    logits = _logits()
    targets = {"cells": torch.tensor([0, 4, 2, 1]), "scene_s3": torch.tensor([2, NO_LABEL, 1, 1])}
    total, per_head = multitask_loss(logits, targets)

    changed = {name: value.detach().clone() for name, value in logits.items()}
    changed["scene_s3"][1] = torch.tensor([100.0, -50.0, 7.0])
    changed_total, _ = multitask_loss(changed, targets)
    assert float(changed_total) == pytest.approx(total.item())

    labelled = torch.tensor([0, 2, 3])  # the mean runs over labelled samples only
    expected = nn.functional.cross_entropy(
        logits["scene_s3"].detach()[labelled], targets["scene_s3"][labelled]
    )
    assert float(per_head["scene_s3"]) == pytest.approx(float(expected))


def test_an_all_masked_head_adds_exactly_zero_and_no_nan_gradient() -> None:
    logits = _logits()
    targets = {"cells": torch.tensor([0, 4, 2, 1]), "scene_s3": torch.full((4,), NO_LABEL)}
    total, per_head = multitask_loss(logits, targets)
    total.backward()

    assert float(per_head["scene_s3"]) == 0.0
    assert total.item() == pytest.approx(float(per_head["cells"]))
    scene_grad = logits["scene_s3"].grad
    assert scene_grad is not None
    assert torch.equal(scene_grad, torch.zeros_like(scene_grad))
    assert torch.isfinite(logits["cells"].grad).all()  # type: ignore[arg-type]


def test_weights_scale_heads_and_default_to_one() -> None:
    logits = _logits()
    targets = {"cells": torch.tensor([0, 4, 2, 1]), "scene_s3": torch.tensor([2, 0, 1, 1])}
    _, per_head = multitask_loss(logits, targets)
    total, _ = multitask_loss(logits, targets, weights={"scene_s3": 0.5})
    assert total.item() == pytest.approx(float(per_head["cells"] + 0.5 * per_head["scene_s3"]))


def test_extra_targets_are_ignored_but_missing_ones_are_errors() -> None:
    logits = _logits()
    targets = {"cells": torch.tensor([0, 4, 2, 1]), "scene_s365": torch.tensor([1, 2, 3, 4])}
    with pytest.raises(TensorError, match="no targets for head 'scene_s3'"):
        multitask_loss(logits, targets)
    targets["scene_s3"] = torch.tensor([2, 0, 1, 1])
    _, per_head = multitask_loss(logits, targets)
    assert set(per_head) == {"cells", "scene_s3"}


@pytest.mark.parametrize(
    ("scene_targets", "message"),
    [
        (torch.tensor([2, 0, 3, 1]), "out of range"),
        (torch.tensor([2, 0, -2, 1]), "out of range"),
        (torch.tensor([2, 0, 1]), "targets \\(3,\\)"),
        (torch.tensor([2.0, 0.0, 1.0, 1.0]), "int64"),
    ],
)
def test_bad_targets_are_refused(scene_targets: torch.Tensor, message: str) -> None:
    targets = {"cells": torch.tensor([0, 4, 2, 1]), "scene_s3": scene_targets}
    with pytest.raises(TensorError, match=message):
        multitask_loss(_logits(), targets)


def test_weights_for_unknown_heads_or_below_zero_are_refused() -> None:
    targets = {"cells": torch.tensor([0, 4, 2, 1]), "scene_s3": torch.tensor([2, 0, 1, 1])}
    with pytest.raises(ConfigError, match="scene_s16"):
        multitask_loss(_logits(), targets, weights={"scene_s16": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        multitask_loss(_logits(), targets, weights={"cells": -1.0})
