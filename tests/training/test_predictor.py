"""Predictor: one image or five crops of it, through the tiny trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geoverdict_training.bundle import read_bundle
from geoverdict_training.model import SCENE_PREFIX


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_five_identical_crops_predict_what_one_crop_predicts(tiny_archive: Path) -> None:
    bundle = read_bundle(tiny_archive)
    predictor = bundle.predictor()
    square = _noise(32, 32)  # resized to 32 px: the five 32-px crops are the same picture
    one = predictor(bundle.transform()(square)[None])
    five = predictor(bundle.transform(five_crop=True)(square)[None])
    assert one.cells is not None and five.cells is not None
    assert torch.allclose(one.cells, five.cells, atol=1e-6)
    for name in one.scenes:
        assert torch.allclose(one.scenes[name], five.scenes[name], atol=1e-6)


def test_five_crop_takes_each_head_s_maximum_over_crops_then_the_product(
    tiny_archive: Path,
) -> None:
    bundle = read_bundle(tiny_archive)
    predictor = bundle.predictor()
    wide = _noise(96, 32, seed=1)  # 32 px high: the corner crops pair up, 3 distinct crops
    crops = bundle.transform(five_crop=True)(wide)
    assert crops.shape == (5, 3, 32, 32)
    assert not torch.equal(crops[0], crops[1])
    out = predictor(crops[None])

    with torch.no_grad():
        logits = predictor.model(crops)  # the five crops as a batch
    best = {head: v.softmax(-1).amax(0) for head, v in logits.items()}  # (n,) per head
    best = {head: p / p.sum() for head, p in best.items()}
    assert predictor.ancestors is not None
    ancestors = predictor.ancestors.numpy()
    product = np.ones(len(predictor.partitions[-1]))
    for j, partition in enumerate(predictor.partitions):
        for f, a in enumerate(ancestors[:, j]):
            if a >= 0:
                product[f] *= float(best[partition.name][a])
    assert out.cells is not None
    assert np.allclose(out.cells[0].numpy(), product / product.sum(), atol=1e-5)
    for name in predictor.scenes:
        assert torch.allclose(out.scenes[name][0], best[SCENE_PREFIX + name], atol=1e-6)
