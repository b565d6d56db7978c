"""The training throughput benchmark measures both ways on a tiny run."""

from __future__ import annotations

from pathlib import Path

from benchmarks import training
from tests.training.synthetic import write_collection


def test_throughput_is_measured_with_and_without_data_loading(tmp_path: Path) -> None:
    meta = write_collection(tmp_path, per_place=4)
    result = training.run(
        "resnet18", meta, tmp_path / "images", batch_size=4, steps=1, workers=0, size=32
    )
    assert result["random_tensors_images_per_s"] > 0
    assert result["real_photos_images_per_s"] > 0
    assert "resnet18" in training.report([result])
