"""`scenes propagate`: scene labels for the photos that lack them, from a scene model."""

from __future__ import annotations

import numpy as np

from geoverdict_training.data.manifest import read_manifest, write_manifest
from geoverdict_training.train.export import bundle_from_checkpoint
from geoverdict_training.train.propagation import propagate_scenes
from tests.training.conftest import TinyRun


def test_missing_scene_labels_are_predicted_and_present_ones_kept(tiny_run: TinyRun) -> None:
    manifest = read_manifest(tiny_run.folder / "meta.csv")
    unlabelled = np.array([0, 20, 40, 63])  # places 0, 1, 2, 3
    manifest.scenes[unlabelled] = -1
    manifest.scenes[5, 2] = -1  # only S365 missing: S3 and S16 stay as they are
    manifest.image_ids[63] = "missing.jpg"
    before = manifest.scenes.copy()
    completed, report = propagate_scenes(
        bundle_from_checkpoint(tiny_run.checkpoint),
        manifest,
        tiny_run.folder / "images",
        batch_size=4,
        workers=0,
        progress=False,
    )
    predicted = completed.scenes[[0, 20, 40]]
    assert predicted.tolist() == [[0, 0, 0], [1, 3, 50], [2, 6, 100]]  # the places' labels
    assert completed.scenes[63].tolist() == [-1, -1, -1]  # no image: left unlabelled
    assert completed.scenes[5].tolist() == [0, 0, 0]
    others = np.setdiff1d(np.arange(len(manifest)), [*unlabelled, 5])
    assert np.array_equal(completed.scenes[others], before[others])
    probs = completed.s3_probabilities
    assert probs is not None
    np.testing.assert_allclose(probs[[0, 5, 20, 40]].sum(axis=1), 1.0, rtol=1e-5)
    assert np.isnan(probs[others]).all()
    assert report.summary() == (
        "scene labels predicted: 64 rows, 4 kept, 60 skipped "
        "(59 already labelled, 1 image missing or undecodable)"
    )
    write_manifest(completed, tiny_run.folder / "completed.csv")
    again = read_manifest(tiny_run.folder / "completed.csv")
    assert np.array_equal(again.scenes, completed.scenes)
