"""Training throughput (images/s): the trainer's optimizer step (forward, backward, SGD), one
batch per step.

Two numbers per backbone: with random tensors (the model alone) and with real photos through the
DataLoader (JPEG decoding in draft mode, augmentation, collation included). The whole backbone
trains, as on a GPU; heads and partitions are the demo model's sizes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geoverdict_training.data.datasets import Batch
    from geoverdict_training.train.step import Stepper

DEMO_HEADS = (("cells_5_200", 38), ("cells_5_100", 49), ("cells_5_50", 75))


def timed_steps(stepper: Stepper, batches: Iterator[Batch], steps: int) -> float:
    """Images per second over `steps` of the trainer's own optimizer steps (train/step.py)
    after one warm-up step; the batches on the stepper's device or copied there."""
    stepper(batches)
    _synchronize(stepper.device)
    started = time.perf_counter()
    images = 0
    for _ in range(steps):
        images += stepper(batches).images
    _synchronize(stepper.device)
    return images / (time.perf_counter() - started)


def _synchronize(device: Any) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously)."""
    import torch  # noqa: PLC0415

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    backbone: str,
    manifest: Path,
    images: Path,
    batch_size: int = 32,
    steps: int = 3,
    workers: int = 1,
    size: int = 224,
) -> dict[str, Any]:
    """Throughput of `backbone` with random tensors and with the manifest's photos."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from torch.utils.data import DataLoader  # noqa: PLC0415

    from geoverdict_training.data.datasets import Batch, ImageFolderDataset, collate  # noqa: PLC0415
    from geoverdict_training.data.labels import Labels  # noqa: PLC0415
    from geoverdict_training.data.manifest import read_manifest  # noqa: PLC0415
    from geoverdict_training.images.transforms import train_transform  # noqa: PLC0415
    from geoverdict_training.models.backbones import backbone_info  # noqa: PLC0415
    from geoverdict_training.models.geo_model import GeoModel, ModelSpec  # noqa: PLC0415
    from geoverdict_training.train.step import Stepper, grad_scaler  # noqa: PLC0415

    torch.manual_seed(0)
    model = GeoModel(ModelSpec(backbone, DEMO_HEADS)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    cpu = torch.device("cpu")
    stepper = Stepper(model, optimizer, grad_scaler(cpu, None), cpu)
    names = [name for name, _ in DEMO_HEADS]

    def random_batches() -> Iterator[Batch]:
        while True:
            labels = {
                name: torch.randint(0, n, (batch_size,)) for name, n in model.spec.heads.items()
            }
            yield Batch(torch.randn(batch_size, 3, size, size), labels, {})

    photos = read_manifest(manifest).with_existing_files(images)
    n = len(photos)
    labels = Labels(
        tuple(names),
        np.random.default_rng(0).integers(0, 38, (n, len(names))),
        photos.scenes,
    )
    info = backbone_info(backbone)
    dataset = ImageFolderDataset(
        photos, labels, images, train_transform(size, mean=info.mean, std=info.std)
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate,
        drop_last=True,
    )
    return {
        "backbone": backbone,
        "batch_size": batch_size,
        "input_size": size,
        "steps": steps,
        "workers": workers,
        "threads": torch.get_num_threads(),
        "random_tensors_images_per_s": timed_steps(stepper, random_batches(), steps),
        "real_photos_images_per_s": timed_steps(stepper, _epochs(loader), steps),
    }


def _epochs(loader: Iterable[Batch]) -> Iterator[Batch]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def report(results: list[dict[str, Any]]) -> str:
    """A small table for people."""
    lines = ["backbone            batch  model alone (img/s)  with data loading (img/s)"]
    for r in results:
        lines.append(
            f"{r['backbone']:<19} {r['batch_size']:>5}  {r['random_tensors_images_per_s']:>19.2f}"
            f"  {r['real_photos_images_per_s']:>25.2f}"
        )
    return "\n".join(lines)
