"""Each photo's class per partition, as GeoEstimation's assign_classes.py finds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import s2sphere

from geoverdict_training.data.labels import SCENE_HEADS, assign_classes, build_labels
from geoverdict_training.data.manifest import Manifest, read_manifest
from geoverdict_training.geo.partition_files import read_cells_csv
from geoverdict_training.geo.partitions import Partition, PartitionSpec, build_partitions
from geoverdict_training.models import geo_model as model


def _reference_classes(lat: np.ndarray, lon: np.ndarray, partition: Partition) -> list[int]:
    mapping = {token: k for k, token in enumerate(partition.tokens)}
    return [_reference_class(a, b, mapping) for a, b in zip(lat, lon, strict=True)]


def _reference_class(lat: float, lon: float, mapping: dict[str, int]) -> int:
    """assign_classes.py: the first of the photo's parents, level 2 to 29, that is a class."""
    cell = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lon))
    for level in range(2, 30):
        token = cell.parent(level).to_token()
        if token in mapping:
            return mapping[token]
    return -1


def test_classes_of_the_building_photos_match_the_partition() -> None:
    rng = np.random.default_rng(2)
    lat = np.clip(rng.normal(20, 20, 2000), -90, 90)
    lon = rng.normal(0, 60, 2000) % 360 - 180
    partitions = build_partitions(lat, lon, [PartitionSpec(5, 80), PartitionSpec(3, 20)])
    classes = assign_classes(lat, lon, partitions)
    assert classes.shape == (2000, 2)
    for j, partition in enumerate(partitions):
        assert classes[:, j].tolist() == _reference_classes(lat, lon, partition)
        assert np.bincount(classes[classes[:, j] >= 0, j]).tolist() == partition.counts.tolist()


def test_labels_carry_scenes_and_name_heads_as_the_model_does() -> None:
    manifest = Manifest(
        ["a", "b"],
        np.array([10.0, 10.0]),
        np.array([20.0, -170.0]),
        np.array([[1, 2, 3], [-1, -1, -1]]),
    )
    (partition,) = build_partitions(np.full(3, 10.0), np.full(3, 20.0), [PartitionSpec(1, 5)])
    labels = build_labels(manifest, [partition])
    assert labels.classes.tolist() == [[0], [-1]]
    assert labels.complete.tolist() == [True, False]
    assert labels.heads == ("cells_1_5", "scene_s3", "scene_s16", "scene_s365")
    columns = labels.columns()
    assert columns["scene_s365"].tolist() == [3, -1]
    assert columns["cells_1_5"].tolist() == [0, -1]
    heads = tuple(model.SCENE_PREFIX + scene for scene in model.SCENE_CLASSES)
    assert heads == SCENE_HEADS  # what the model calls its scene heads


def test_dev_photos_in_the_public_partitions(shared_data: Path) -> None:
    manifest = read_manifest(shared_data / "im2gps3k-dev" / "dev.csv")
    partition = read_cells_csv(shared_data / "geoestimation" / "cells_50_1000.csv")
    labels = build_labels(manifest, [partition])
    expected = _reference_classes(manifest.lat, manifest.lon, partition)
    assert labels.classes[:, 0].tolist() == expected
    assert labels.complete.mean() > 0.8  # most test photos lie in a well-photographed cell
    assert labels.scenes.tolist() == manifest.scenes.tolist()
