"""Hierarchical prediction, five-crop inference and top-k, against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.inference.hierarchical import (
    five_crop_probabilities,
    hierarchical_probabilities,
    hierarchical_probabilities_from_probs,
    top_k,
)

# Three partitions of 2, 3 and 5 classes; fine class f's ancestors per row, -1 where a coarser
# partition has no cell containing f (fine 3 has no coarse parent, fine 4 no middle one).
ANCESTORS = np.array(
    [
        [0, 0, 0],
        [0, 0, 1],
        [0, 1, 2],
        [-1, 2, 3],
        [1, -1, 4],
    ],
    dtype=np.int64,
)


def _logits(batch: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, n, generator=generator) * 3 for n in (2, 3, 5)]


def _brute_force(logits: list[torch.Tensor]) -> list[list[float]]:
    """Plain Python: product of softmax probabilities, factor 1 for a missing ancestor."""
    rows = []
    for b in range(logits[0].shape[0]):
        softmaxes = []
        for partition in logits:
            exps = [math.exp(float(v)) for v in partition[b]]
            softmaxes.append([e / sum(exps) for e in exps])
        products = []
        for row in ANCESTORS.tolist():
            product = 1.0
            for j, ancestor in enumerate(row):
                if ancestor >= 0:
                    product *= softmaxes[j][ancestor]
            products.append(product)
        rows.append([p / sum(products) for p in products])
    return rows


def test_hierarchical_probabilities_equal_the_brute_force_product() -> None:
    logits = _logits()
    result = hierarchical_probabilities(logits, ANCESTORS)
    assert result.shape == (3, 5)
    assert result.tolist() == [pytest.approx(row, rel=1e-5) for row in _brute_force(logits)]
    assert torch.allclose(result.sum(dim=-1), torch.ones(3))


def test_probabilities_in_give_the_same_as_logits_in() -> None:
    logits = _logits()
    from_probs = hierarchical_probabilities_from_probs([x.softmax(-1) for x in logits], ANCESTORS)
    assert torch.allclose(
        from_probs, hierarchical_probabilities(logits, torch.from_numpy(ANCESTORS))
    )


def test_tiny_products_do_not_underflow_to_nan() -> None:
    # Both fine classes lie in the coarse class of probability e^-200, 0 in float32: the plain
    # product is 0 / 0 for every fine class, the log-space sum is not.
    logits = [torch.tensor([[0.0, -200.0]]), torch.tensor([[0.0, 0.0]])]
    ancestors = np.array([[1, 0], [1, 1]], dtype=np.int64)
    result = hierarchical_probabilities(logits, ancestors)
    assert result.tolist() == [pytest.approx([0.5, 0.5])]


def _changed(row: int, column: int, value: int) -> np.ndarray:
    ancestors = ANCESTORS.copy()
    ancestors[row, column] = value
    return ancestors


@pytest.mark.parametrize(
    ("ancestors", "message"),
    [
        (ANCESTORS[:, :2], "shape"),
        (ANCESTORS[:4], "shape"),
        (ANCESTORS.astype(np.float32), "integer"),
        (_changed(4, 2, 3), "last column"),
        (_changed(0, 0, 2), "n_j"),  # the coarse partition has 2 classes
        (_changed(0, 1, -2), "n_j"),
    ],
)
def test_a_malformed_hierarchy_is_refused(ancestors: np.ndarray, message: str) -> None:
    with pytest.raises(TensorError, match=message):
        hierarchical_probabilities(_logits(), ancestors)


def test_five_crop_takes_the_maximum_over_crops_of_each_softmax() -> None:
    generator = torch.Generator().manual_seed(1)
    per_crop_logits = torch.randn(2 * 5, 4, generator=generator)  # (B * K, n)
    crops = torch.zeros(2, 5, 3, 8, 8)

    def model(images: torch.Tensor) -> dict[str, torch.Tensor]:
        assert images.shape == (10, 3, 8, 8)  # crops folded into the batch
        return {"cells": per_crop_logits}

    result = five_crop_probabilities(model, crops)["cells"]
    expected = per_crop_logits.softmax(-1).reshape(2, 5, 4).amax(dim=1)
    assert torch.allclose(result, expected / expected.sum(-1, keepdim=True))
    assert torch.allclose(result.sum(-1), torch.ones(2))


def test_five_identical_crops_equal_one_crop() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    result = five_crop_probabilities(
        lambda x: {"h": logits.expand(x.shape[0], 3)}, torch.zeros(1, 5, 3, 4, 4)
    )
    assert torch.allclose(result["h"], logits.softmax(-1))


def test_top_k_is_sorted_and_capped_at_the_number_of_classes() -> None:
    probabilities = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    best = top_k(probabilities, 2)
    assert best.indices.tolist() == [[1, 2], [0, 2]]
    assert best.probabilities.tolist() == [pytest.approx([0.6, 0.3]), pytest.approx([0.5, 0.3])]
    assert top_k(probabilities, 10).indices.shape == (2, 3)
    with pytest.raises(ConfigError):
        top_k(probabilities, 0)
