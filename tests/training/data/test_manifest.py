"""Manifests in the public meta format: bad rows skipped and counted, never fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoverdict_training.data.manifest import Manifest, read_manifest, write_manifest
from geoverdict_training.exceptions import DataFileError
from tests.training.imagefiles import write_photos

GOOD = "a.jpg,10.5,20.25,2,12,353\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "meta.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_ids_coordinates_and_scene_labels(tmp_path: Path) -> None:
    path = _write(tmp_path, "IMG_ID,LAT,LON,S3_Label,S16_Label,S365_Label\n" + GOOD)
    manifest = read_manifest(path)
    assert manifest.image_ids == ["a.jpg"]
    assert manifest.lat.tolist() == [10.5]
    assert manifest.lon.tolist() == [20.25]
    assert manifest.scenes.tolist() == [[2, 12, 353]]
    assert manifest.authors is None


def test_scene_labels_and_author_are_optional(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffimg_id,author,lat,lon,extra\nx/b.jpg,me,-1,2,zzz\n")
    manifest = read_manifest(path)
    assert manifest.scenes.tolist() == [[-1, -1, -1]]
    assert manifest.authors == ["me"]
    assert manifest.image_ids == ["x/b.jpg"]


def test_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    text = (
        "IMG_ID,LAT,LON,S3_Label,S16_Label,S365_Label\n"
        + GOOD
        + "b.jpg,north,20,1,1,1\n"  # not a number
        + "c.jpg,91,20,1,1,1\n"  # latitude out of range
        + "d.jpg,10,-180.5,1,1,1\n"  # longitude out of range
        + "e.jpg,nan,20,1,1,1\n"
        + ",10,20,1,1,1\n"  # no id
        + "a.jpg,11,21,1,1,1\n"  # repeated id
        + "f.jpg,10,20,3,1,1\n"  # S3 has classes 0..2
        + "g.jpg,10,20,1.5,1,1\n"
        + "h.jpg,10,20,,,\n"  # empty scene labels are absent, not bad
        + "i.jpg,-90,180\n"  # short row: missing scene fields are absent
        + "\n"
    )
    manifest = read_manifest(_write(tmp_path, text))
    assert manifest.image_ids == ["a.jpg", "h.jpg", "i.jpg"]
    assert manifest.scenes.tolist() == [[2, 12, 353], [-1, -1, -1], [-1, -1, -1]]
    assert manifest.skips.summary() == (
        "manifest meta.csv: 11 rows, 3 kept, 8 skipped (4 bad coordinates, 2 bad scene label, "
        "1 duplicate IMG_ID, 1 missing IMG_ID)"
    )


def test_missing_columns_or_file_are_data_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="LON"):
        read_manifest(_write(tmp_path, "IMG_ID,LAT\na.jpg,1\n"))
    with pytest.raises(DataFileError, match="empty"):
        read_manifest(_write(tmp_path, ""))
    with pytest.raises(DataFileError, match="cannot read"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFileError):
        read_manifest(tmp_path / "binary.csv")


def test_rows_without_a_file_are_counted_as_missing(tmp_path: Path) -> None:
    write_photos(tmp_path / "images", ["a.jpg"])
    path = _write(tmp_path, "IMG_ID,LAT,LON\na.jpg,1,2\nb.jpg,3,4\n")
    manifest = read_manifest(path).with_existing_files(tmp_path / "images")
    assert manifest.image_ids == ["a.jpg"]
    assert manifest.skips.summary().endswith("2 rows, 1 kept, 1 skipped (1 missing file)")


def test_written_manifest_reads_back(tmp_path: Path) -> None:
    manifest = Manifest(
        image_ids=["a.jpg", "b c.jpg"],
        lat=np.array([1.0, -2.5]),
        lon=np.array([3.0, 179.123456789]),
        scenes=np.array([[0, 5, 7], [-1, -1, -1]]),
        authors=["x", "y,z"],
    )
    path = tmp_path / "out" / "m.csv"
    write_manifest(manifest, path)
    assert path.read_text().splitlines()[0] == "IMG_ID,AUTHOR,LAT,LON,S3_Label,S16_Label,S365_Label"
    back = read_manifest(path)
    assert back.image_ids == manifest.image_ids
    assert back.authors == manifest.authors
    assert back.lon.tolist() == manifest.lon.tolist()
    assert back.scenes.tolist() == manifest.scenes.tolist()


def test_subset_keeps_rows_in_order() -> None:
    manifest = Manifest(
        ["a", "b", "c"], np.array([1.0, 2, 3]), np.array([4.0, 5, 6]), -np.ones((3, 3), np.int64)
    )
    picked = manifest.subset(np.array([2, 0]))
    assert picked.image_ids == ["c", "a"]
    assert picked.lat.tolist() == [3.0, 1.0]


def test_reads_the_dev_manifest(shared_data: Path) -> None:
    manifest = read_manifest(shared_data / "im2gps3k-dev" / "dev.csv")
    assert len(manifest) == 1995
    assert manifest.skips.skipped == 0
    assert manifest.authors is not None and len(set(manifest.authors)) == 143
    assert (manifest.scenes >= 0).all()
    assert manifest.with_existing_files(shared_data / "im2gps3k-dev" / "images").image_ids == (
        manifest.image_ids
    )


def test_s3_probabilities_are_read_written_and_subset(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "IMG_ID,LAT,LON,S3_Label,Prob_indoor,Prob_natural,Prob_urban\n"
        "a.jpg,1,2,0,0.7,0.2,0.1\n"
        "b.jpg,3,4,,,,\n"
        "c.jpg,5,6,2,0.1,x,0.8\n",
    )
    manifest = read_manifest(path)
    probs = manifest.s3_probabilities
    assert probs is not None
    assert probs[0].tolist() == [0.7, 0.2, 0.1]
    assert np.isnan(probs[1]).all() and np.isnan(probs[2, 1])  # a malformed hint is absent
    write_manifest(manifest.subset(np.array([2, 0])), tmp_path / "out.csv")
    again = read_manifest(tmp_path / "out.csv")
    assert again.image_ids == ["c.jpg", "a.jpg"]
    assert again.s3_probabilities is not None
    assert again.s3_probabilities[1].tolist() == [0.7, 0.2, 0.1]
    assert read_manifest(_write(tmp_path, "IMG_ID,LAT,LON\na.jpg,1,2\n")).s3_probabilities is None
