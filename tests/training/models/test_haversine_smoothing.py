"""Haversine label smoothing: soft targets that decay with the distance from the photo, and the
loss that learns them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from geoverdict_training.exceptions import ConfigError
from geoverdict_training.geo.partitions import PartitionSpec, build_partitions
from geoverdict_training.models.haversine_smoothing import HaversineSmoothing
from geoverdict_training.models.losses import NO_LABEL, multitask_loss

PLACES = [(48.85, 2.35), (51.5, -0.12), (40.7, -74.0), (35.7, 139.7)]  # Paris, London, NY, Tokyo


def _partitions() -> list:
    rng = np.random.default_rng(0)
    lat = np.concatenate([rng.normal(p[0], 0.05, 10) for p in PLACES])
    lon = np.concatenate([rng.normal(p[1], 0.05, 10) for p in PLACES])
    return build_partitions(lat, lon, [PartitionSpec(5, 100)])


def test_targets_sum_to_one_and_fall_with_distance() -> None:
    (partition,) = _partitions()
    smoothing = HaversineSmoothing.for_partitions([partition], [500.0])
    assert smoothing is not None
    paris = torch.tensor([[48.85, 2.35]])
    q = smoothing.targets(paris, torch.device("cpu"))[partition.name][0].numpy()
    assert q.sum() == pytest.approx(1.0)
    order = np.argsort(-q)
    nearest = [
        PLACES.index(
            min(
                PLACES,
                key=lambda p, k=k: (
                    (p[0] - partition.lat_mean[k]) ** 2 + (p[1] - partition.lon_mean[k]) ** 2
                ),
            )
        )
        for k in order
    ]
    assert nearest == [0, 1, 2, 3]  # Paris, then London (340 km), New York, Tokyo
    assert q[order[1]] > 0.3 * q[order[0]]  # London shares the target at tau = 500 km
    sharper = HaversineSmoothing.for_partitions([partition], [50.0])
    assert sharper is not None
    q_sharp = sharper.targets(paris, torch.device("cpu"))[partition.name][0].numpy()
    assert q_sharp.max() > 0.99 and q_sharp.argmax() == q.argmax()


def test_zero_taus_mean_the_hard_labels_and_a_wrong_count_is_an_error() -> None:
    partitions = _partitions()
    assert HaversineSmoothing.for_partitions(partitions, []) is None
    assert HaversineSmoothing.for_partitions(partitions, [0.0]) is None
    with pytest.raises(ConfigError, match="one tau per partition"):
        HaversineSmoothing.for_partitions(partitions, [100.0, 50.0])
    with pytest.raises(ConfigError, match=">= 0"):
        HaversineSmoothing.for_partitions(partitions, [-1.0])


def test_one_hot_soft_targets_give_the_cross_entropy_and_masked_photos_count_nothing() -> None:
    logits = {"cells": torch.randn(3, 4, generator=torch.Generator().manual_seed(0))}
    labels = torch.tensor([2, 0, NO_LABEL])
    one_hot = nn.functional.one_hot(labels.clamp(min=0), 4).float()
    soft, _ = multitask_loss(logits, {"cells": labels}, soft={"cells": one_hot})
    hard, _ = multitask_loss(logits, {"cells": labels})
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)
    spread = torch.full((3, 4), 0.25)
    uniform, _ = multitask_loss(logits, {"cells": labels}, soft={"cells": spread})
    expected = -(logits["cells"][:2].log_softmax(-1).mean(-1)).mean()
    assert uniform.item() == pytest.approx(expected.item(), rel=1e-6)
