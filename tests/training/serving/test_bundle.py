"""Model bundles: from a checkpoint, into an archive, back; the version follows the content."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from geoverdict_training.exceptions import CheckpointError
from geoverdict_training.inference.best_guess import GuessRule
from geoverdict_training.inference.calibration import Calibration
from geoverdict_training.serving.bundle import read_bundle, write_bundle
from geoverdict_training.train.export import bundle_from_checkpoint
from tests.training.conftest import TinyRun


def test_a_checkpoint_and_its_archive_give_the_same_model(
    tiny_run: TinyRun, tiny_archive: Path
) -> None:
    direct = bundle_from_checkpoint(tiny_run.checkpoint, "tiny")
    archived = read_bundle(tiny_archive)
    assert archived.version == direct.version
    assert archived.version.startswith("tiny-") and len(archived.version) == len("tiny-") + 10
    assert [p.tokens for p in archived.partitions] == [p.tokens for p in direct.partitions]
    assert direct.ancestors is not None and archived.ancestors is not None
    assert np.array_equal(archived.ancestors, direct.ancestors)
    images = torch.rand(2, 3, 32, 32)
    a = archived.predictor()(images)
    b = direct.predictor()(images)
    assert a.cells is not None and b.cells is not None
    torch.testing.assert_close(a.cells, b.cells)


def test_the_archive_holds_what_serving_needs(tiny_archive: Path) -> None:
    with zipfile.ZipFile(tiny_archive) as archive:
        names = set(archive.namelist())
        metadata = json.loads(archive.read("metadata.json"))
        model_config = archive.read("model-config.yaml").decode()
    assert {"weights.pt", "metadata.json", "model-config.yaml", "handler.py"} <= names
    assert {"geoverdict_training/models/geo_model.py", "geoverdict_common/exif.py"} <= names
    assert "geoverdict_training/places365_categories.txt" in names
    # The serving layers only: no training loop, dataset or evaluation code rides along.
    layers = {name.split("/")[1] for name in names if name.startswith("geoverdict_training/")}
    assert {"serving", "inference", "models", "images", "geo"} <= layers
    assert not layers & {"train", "data", "evaluation", "commands"}
    assert metadata["model_version"] == read_bundle(tiny_archive).version
    fine = metadata["partitions"][-1]
    assert {"tokens", "levels", "lat_mean", "lon_mean"} <= set(fine)
    assert len(metadata["hierarchy"]) == len(fine["tokens"])
    assert metadata["scene_names"]["s3"] == ["indoor", "natural", "urban"]
    assert len(metadata["scene_names"]["s365"]) == 365
    assert "batchSize: 4" in model_config and "maxBatchDelay" in model_config


def test_changed_weights_or_metadata_are_detected(tiny_run: TinyRun, tmp_path: Path) -> None:
    bundle = bundle_from_checkpoint(tiny_run.checkpoint, "tiny")
    _, metadata = write_bundle(bundle, tmp_path)
    assert read_bundle(tmp_path).version == bundle.version
    data = json.loads(metadata.read_text())
    data["partitions"][-1]["lat_mean"][0] += 1.0
    metadata.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="changed since export"):
        read_bundle(tmp_path)


def test_temperatures_are_part_of_the_model_and_of_its_version(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    bundle = bundle_from_checkpoint(tiny_run.checkpoint, "tiny")
    assert bundle.calibration is not None  # the run fitted them at its end
    uncalibrated = dataclasses.replace(bundle, calibration=None, calibration_report={})
    hotter = dataclasses.replace(bundle, calibration=Calibration({"cells_2_10": 7.0}, 2.0))
    assert len({bundle.version, uncalibrated.version, hotter.version}) == 3
    write_bundle(hotter, tmp_path / "hot")
    assert read_bundle(tmp_path / "hot").calibration == hotter.calibration
    write_bundle(uncalibrated, tmp_path / "plain")
    metadata = json.loads((tmp_path / "plain" / "metadata.json").read_text())
    assert "calibration" not in metadata  # older archives, without the key, keep their version
    assert read_bundle(tmp_path / "plain").calibration is None


def test_a_file_that_is_no_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.mar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("handler.py", "")
    with pytest.raises(CheckpointError, match="not a geoverdict model archive"):
        read_bundle(path)
    with pytest.raises(CheckpointError, match="no model files"):
        read_bundle(tmp_path)


def test_the_best_guess_rule_and_the_baselines_ride_in_the_archive(
    tiny_run: TinyRun, tiny_archive: Path, tmp_path: Path
) -> None:
    archived = read_bundle(tiny_archive)
    assert str(archived.guess_rule) == "expected_distance"  # export's default
    assert set(archived.baselines) == {"photos", "grid_deg", "densest", "geodesic_median"}
    assert archived.baselines["photos"] == archived.partitions[-1].num_images  # training photos
    rule = GuessRule.parse("mass_within:2500")
    other = bundle_from_checkpoint(tiny_run.checkpoint, "tiny", rule)
    assert other.guess_rule == rule and other.version != archived.version  # a new model
    write_bundle(other, tmp_path / "b")
    assert read_bundle(tmp_path / "b").guess_rule == rule
    # An archive older than the rule has no key: it gets the default, and keeps its version.
    older = dataclasses.replace(other, best_guess=None, baselines={})
    assert "best_guess" not in older.metadata() and "baselines" not in older.metadata()
    write_bundle(older, tmp_path / "old")
    assert read_bundle(tmp_path / "old").guess_rule == GuessRule()
