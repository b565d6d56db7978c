"""Predictor: one image or five crops of it, through the tiny trained model, calibrated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.inference.hierarchical import hierarchical_probabilities
from geoverdict_training.models.geo_model import SCENE_PREFIX
from geoverdict_training.serving.bundle import read_bundle


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
    predictor = bundle.predictor().with_calibration(Calibration())  # the raw softmaxes
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


def test_a_calibrated_predictor_divides_each_head_then_the_product(tiny_archive: Path) -> None:
    bundle = read_bundle(tiny_archive)
    plain = bundle.predictor().with_calibration(Calibration())
    names = [p.name for p in plain.partitions]
    temperatures = {names[0]: 2.0, names[1]: 0.5, "scene_s3": 3.0}
    calibrated = plain.with_calibration(Calibration(temperatures, hierarchy=4.0))
    images = bundle.transform()(_noise(40, 32))[None]
    out, raw = calibrated(images), plain(images)
    assert out.cells is not None and plain.ancestors is not None
    logits = raw.logits
    expected = hierarchical_probabilities(
        [logits[names[0]] / 2.0, logits[names[1]] / 0.5], plain.ancestors, temperature=4.0
    )
    torch.testing.assert_close(out.cells, expected)
    torch.testing.assert_close(out.scenes["s3"], (logits["scene_s3"] / 3.0).softmax(-1))
    torch.testing.assert_close(out.scenes["s16"], raw.scenes["s16"])  # no temperature: T = 1
    torch.testing.assert_close(out.logits[names[0]], logits[names[0]])  # logits stay raw
    # Five identical crops: the same calibrated answer as one crop.
    five = calibrated(bundle.transform(five_crop=True)(_noise(32, 32))[None])
    one = calibrated(bundle.transform()(_noise(32, 32))[None])
    assert five.cells is not None and one.cells is not None
    torch.testing.assert_close(five.cells, one.cells, atol=1e-6, rtol=1e-5)
