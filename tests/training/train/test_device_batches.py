"""Training batches decoded and augmented on the device (here the CPU): the same photos, labels
and skip counts as the loader path, and a run that learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geoverdict_training.data.datasets import EncodedBatch
from geoverdict_training.images.transforms import InputSpec
from geoverdict_training.train.config import TrainConfig
from geoverdict_training.train.device_batches import DeviceBatches
from geoverdict_training.train.trainer import train
from tests.training.imagefiles import encoded, jpeg_bytes
from tests.training.synthetic import tiny_config, write_collection

SPEC = InputSpec(size=16, resize=20, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_undecodable_photos_leave_the_batch_with_their_labels_and_are_counted() -> None:
    bodies = [
        jpeg_bytes((40, 30), (255, 255, 255)),
        b"not a photo",
        encoded(Image.new("RGB", (30, 40), (0, 0, 0)), "PNG"),
    ]
    labels = {"cells": torch.tensor([7, 8, 9]), "coords": torch.zeros(3, 2)}
    batch = DeviceBatches(torch.device("cpu"), SPEC)(
        EncodedBatch(bodies, labels, {"image unreadable": 2})
    )
    assert batch.images.shape == (2, 3, 16, 16)
    assert batch.labels["cells"].tolist() == [7, 9]
    assert batch.labels["coords"].shape == (2, 2)
    assert batch.skipped == {"image unreadable": 2, "image undecodable": 1}
    # white JPEG (decoded on the device) and black PNG (by Pillow), normalised alike
    assert batch.images[0].mean().item() == np.float32(2.0)
    assert batch.images[1].mean().item() == np.float32(-2.0)


def test_a_batch_of_nothing_decodable_is_empty() -> None:
    batch = DeviceBatches(torch.device("cpu"), SPEC)(
        EncodedBatch([b"x"], {"cells": torch.tensor([1])}, {})
    )
    assert batch.size == 0 and batch.skipped == {"image undecodable": 1}


def test_a_run_decoding_on_the_device_learns(tmp_path: Path) -> None:
    write_collection(tmp_path)
    (tmp_path / "images" / "p0_0.jpg").write_bytes(b"damaged")
    config = tiny_config(tmp_path, decode="device", max_steps=20, calibrate=False)
    result = train(TrainConfig.from_dict(config))
    records = [r for r in result.history if r["split"] == "train"]
    assert len(records) == 20
    first = np.mean([r["loss"] for r in records[:4]])
    last = np.mean([r["loss"] for r in records[-4:]])
    assert last < 0.7 * first
    assert set(result.skips.reasons) == {"image undecodable"}  # the damaged photo, each epoch
    assert result.skips.reasons["image undecodable"] >= 1
