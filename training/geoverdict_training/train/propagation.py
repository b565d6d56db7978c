"""Scene labels for geotagged photos that have none, from the helper scene network.

The seed paper's multitask training needs scene labels for every photo; a public geo collection
has coordinates only. A scene model (trained with `scene_only: true`) predicts, for each photo
lacking any of S3 / S16 / S365, the top-1 class of every scene head it has and the S3
probabilities (Prob_indoor / natural / urban, as in the public meta files). Labels a photo
already has are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoverdict_training.data.manifest import Manifest
from geoverdict_training.data.skips import Skips
from geoverdict_training.evaluation.predictions import predict_manifest
from geoverdict_training.exceptions import ConfigError
from geoverdict_training.serving.bundle import ModelBundle
from geoverdict_training.vocabulary import SCENE_SETS


def propagate_scenes(
    bundle: ModelBundle,
    manifest: Manifest,
    images: Path,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
) -> tuple[Manifest, Skips]:
    """The manifest with predicted scene labels where it had none; the tally of what was done."""
    if not bundle.spec.scenes:
        raise ConfigError(f"{bundle.name} has no scene heads: train it with scene heads")
    missing = np.flatnonzero((manifest.scenes < 0).any(axis=1))  # rows lacking a label
    report = Skips("scene labels predicted")
    report.seen = len(manifest)
    report.skip("already labelled", len(manifest) - missing.size)
    scenes = manifest.scenes.copy()
    probs = (
        np.full((len(manifest), 3), np.nan)
        if manifest.s3_probabilities is None
        else manifest.s3_probabilities.copy()
    )
    if missing.size:
        todo = manifest.subset(missing).with_existing_files(images)
        result = predict_manifest(
            bundle.predictor(),
            bundle.transform(),
            todo,
            images,
            min_side=bundle.resize,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
        )
        position = {image_id: k for k, image_id in enumerate(manifest.image_ids)}
        done = np.array([position[todo.image_ids[r]] for r in result.rows], dtype=np.int64)
        for column, name in enumerate(SCENE_SETS):
            if name in result.scenes:
                predicted = result.scenes[name].argmax(axis=1)
                keep = scenes[done, column] < 0
                scenes[done[keep], column] = predicted[keep]
        if "s3" in result.scenes:
            probs[done] = result.scenes["s3"]
        report.skip("image missing or undecodable", missing.size - done.size)
    completed = Manifest(
        image_ids=list(manifest.image_ids),
        lat=manifest.lat.copy(),
        lon=manifest.lon.copy(),
        scenes=scenes,
        authors=None if manifest.authors is None else list(manifest.authors),
        skips=manifest.skips,
        s3_probabilities=probs,
    )
    return completed, report
