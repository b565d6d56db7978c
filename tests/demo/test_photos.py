"""The demo's photos: never one the model was trained on."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from geoverdict.demo.photos import demo_photos, training_config, validation_photos
from tests.repo import REPO_ROOT


def demo_archive() -> Path:
    archives = sorted((REPO_ROOT / "model_store").glob("*.mar"))
    if not archives:
        pytest.skip("no archive in model_store/")
    return archives[0]


@pytest.mark.shared_data
def test_the_demo_shows_only_photos_of_the_photographers_held_out(shared_data: Path) -> None:
    from geoverdict_training.data.manifest import read_manifest
    from geoverdict_training.data.splits import split_by_author

    archive = demo_archive()
    config = training_config(archive)
    assert config is not None and config["val_fraction"] > 0
    dev = shared_data / "im2gps3k-dev"
    whole = read_manifest(dev / "dev.csv").with_existing_files(dev / "images")
    trained_on = set(
        split_by_author(whole, config["val_fraction"], config["split_seed"]).train.image_ids
    )

    photos = validation_photos(archive, limit=1000)
    assert len(photos) >= 100
    assert not {p.name for p in photos} & trained_on
    truth = dict(zip(whole.image_ids, zip(whole.lat, whole.lon, strict=True), strict=True))
    for photo in photos:
        assert photo.claim == pytest.approx(truth[photo.name])  # the true position is the claim


def test_an_archive_that_does_not_say_how_it_was_trained_gets_no_development_photo(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "other.mar"
    with zipfile.ZipFile(archive, "w") as mar:
        mar.writestr("handler.py", "")
    assert validation_photos(archive, limit=100) == []
    photos = demo_photos(None, limit=100, archive=archive)
    assert all(p.claim is None for p in photos)  # scikit-image's photographs only


@pytest.mark.shared_data
def test_the_validation_photos_are_found_from_elsewhere_through_the_shared_data_setting(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The archive records paths relative to where it was trained (../shared/data/...): from
    # another working directory, GEOVERDICT_SHARED_DATA says where the photos are.
    archive = demo_archive()
    monkeypatch.setenv("GEOVERDICT_SHARED_DATA", str(shared_data))
    monkeypatch.chdir(tmp_path)
    assert len(validation_photos(archive, limit=1000)) >= 100
