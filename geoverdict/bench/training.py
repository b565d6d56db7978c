"""Training throughput (images/s): one full optimizer step (forward, backward, SGD) per batch.

Two numbers per backbone: with random tensors (the model alone) and with real photos through the
DataLoader (JPEG decoding in draft mode, augmentation, collation included). The whole backbone
trains, as on a GPU; heads and partitions are the demo model's sizes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

DEMO_HEADS = (("cells_5_200", 38), ("cells_5_100", 49), ("cells_5_50", 75))


def timed_steps(
    model: Any,
    optimizer: Any,
    batches: Any,
    steps: int,
    *,
    autocast: Any = None,
    channels_last: bool = False,
) -> float:
    """Images per second over `steps` optimizer steps after one warm-up step; batches and the
    model on the same device, the forward pass in `autocast` (a torch dtype) when given."""
    import contextlib  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from geoverdict_training.models.losses import multitask_loss  # noqa: PLC0415

    count, started = 0, 0.0
    for k, batch in enumerate(batches):
        if k == 1:
            _synchronize(batch.images.device)
            count, started = 0, time.perf_counter()
        images = batch.images
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)  # NHWC
        labels = {name: value.to(images.device) for name, value in batch.labels.items()}
        precision = (
            torch.autocast(images.device.type, dtype=autocast)
            if autocast is not None
            else contextlib.nullcontext()
        )
        with precision:
            logits = model(images)
            loss, _ = multitask_loss(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += batch.size
        if k == steps:
            _synchronize(images.device)
            break
    return count / (time.perf_counter() - started)


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

    torch.manual_seed(0)
    model = GeoModel(ModelSpec(backbone, DEMO_HEADS)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    names = [name for name, _ in DEMO_HEADS]

    def random_batches() -> Any:
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
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
        collate_fn=collate, drop_last=True,
    )  # fmt: skip
    return {
        "backbone": backbone,
        "batch_size": batch_size,
        "input_size": size,
        "steps": steps,
        "workers": workers,
        "threads": torch.get_num_threads(),
        "random_tensors_images_per_s": timed_steps(model, optimizer, random_batches(), steps),
        "real_photos_images_per_s": timed_steps(model, optimizer, iter(loader), steps),
    }


def report(results: list[dict[str, Any]]) -> str:
    """A small table for people."""
    lines = ["backbone            batch  model alone (img/s)  with data loading (img/s)"]
    for r in results:
        lines.append(
            f"{r['backbone']:<19} {r['batch_size']:>5}  {r['random_tensors_images_per_s']:>19.2f}"
            f"  {r['real_photos_images_per_s']:>25.2f}"
        )
    return "\n".join(lines)
