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


def _timed_steps(model: Any, optimizer: Any, batches: Any, steps: int) -> float:
    """Images per second over `steps` steps after one warm-up step."""
    import torch  # noqa: PLC0415

    from geoverdict_training.losses import multitask_loss  # noqa: PLC0415

    count, started = 0, 0.0
    for k, batch in enumerate(batches):
        if k == 1:
            count, started = 0, time.perf_counter()
        logits = model(batch.images)
        loss, _ = multitask_loss(logits, batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += batch.size
        if k == steps:
            break
    torch.cuda.synchronize() if torch.cuda.is_available() else None
    return count / (time.perf_counter() - started)


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

    from geoverdict_training.backbones import backbone_info  # noqa: PLC0415
    from geoverdict_training.datasets import Batch, ImageFolderDataset, collate  # noqa: PLC0415
    from geoverdict_training.images import train_transform  # noqa: PLC0415
    from geoverdict_training.labels import Labels  # noqa: PLC0415
    from geoverdict_training.manifest import read_manifest  # noqa: PLC0415
    from geoverdict_training.model import GeoModel, ModelSpec  # noqa: PLC0415

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
        "random_tensors_images_per_s": _timed_steps(model, optimizer, random_batches(), steps),
        "real_photos_images_per_s": _timed_steps(model, optimizer, iter(loader), steps),
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
