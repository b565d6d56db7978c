"""A tiny learnable photo collection: four places, each with its own colour and scene labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geoverdict_training.data.manifest import Manifest, write_manifest
from tests.training.imagefiles import encoded

PLACES = [(48.85, 2.35), (40.71, -74.0), (35.68, 139.65), (-33.87, 151.21)]
COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 220, 40)]


def write_collection(folder: Path, per_place: int = 16, authors_per_place: int = 2) -> Path:
    """JPEGs under folder/images and folder/meta.csv (public meta format, with AUTHOR)."""
    rng = np.random.default_rng(0)
    ids, lat, lon, scenes, authors = [], [], [], [], []
    for place, ((p_lat, p_lon), colour) in enumerate(zip(PLACES, COLOURS, strict=True)):
        for k in range(per_place):
            name = f"p{place}_{k}.jpg"
            noise = rng.integers(-25, 26, (32, 40, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            path = folder / "images" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encoded(Image.fromarray(pixels), "JPEG", quality=90))
            ids.append(name)
            lat.append(p_lat + rng.normal(0, 0.3))
            lon.append(p_lon + rng.normal(0, 0.3))
            scenes.append((place % 3, (place * 3) % 16, place * 50))
            authors.append(f"author{place}_{k % authors_per_place}")
    manifest = Manifest(
        image_ids=ids,
        lat=np.array(lat),
        lon=np.array(lon),
        scenes=np.array(scenes, dtype=np.int64),
        authors=authors,
    )
    write_manifest(manifest, folder / "meta.csv")
    return folder / "meta.csv"


def tiny_config(folder: Path, **overrides: Any) -> dict[str, Any]:
    """Config keys for a seconds-long CPU run on write_collection's photos."""
    config: dict[str, Any] = {
        "manifest": str(folder / "meta.csv"),
        "images": str(folder / "images"),
        "out_dir": str(folder / "run"),
        "backbone": "resnet18",
        "pretrained": False,
        "partitions": [[2, 100], [2, 10]],
        "input_size": 32,
        "resize": 32,
        "batch_size": 8,
        "optimizer": "adamw",
        "lr": 0.001,
        "max_steps": 30,
        "eval_every": 0,
        "checkpoint_every": 0,
        "log_every": 1,
        "workers": 0,
        "val_fraction": 0.25,
        "progress": False,
    }
    config.update(overrides)
    return config
