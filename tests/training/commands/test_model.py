"""`train`, `evaluate --model`, `export`, `data split`, `scenes propagate` as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geoverdict.cli import main
from geoverdict_common.contract import PREDICTION, errors
from geoverdict_training.data.manifest import read_manifest
from geoverdict_training.inference.predictor import Output, Predictor
from geoverdict_training.serving.bundle import read_bundle
from tests.training.conftest import TinyRun
from tests.training.synthetic import tiny_config, write_collection


def test_train_reads_a_yaml_config_and_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_collection(tmp_path, per_place=4)
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny_config(tmp_path, max_steps=50)))  # JSON is YAML
    assert main(["train", "-c", str(config), "max_steps=2", "val_fraction=0.25"]) == 0
    out = capsys.readouterr().out
    assert "step 2: " in out and "step_0000002.pt" in out
    assert '"split": "val"' in out
    assert "training images: 16 rows, 16 kept, 0 skipped" in out


def test_a_bad_config_key_is_a_one_line_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "manifest=m.csv", "images=i", "learning_rate=0.1"]) == 2
    assert "'learning_rate'" in capsys.readouterr().err
    assert main(["train", "manifest=m.csv", "images=i", "max_steps=many"]) == 2
    assert "config key 'max_steps': expected int" in capsys.readouterr().err


def test_evaluate_a_model_reproduces_the_runs_validation(
    tiny_run: TinyRun, tiny_archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = tiny_run.folder / "run" / "val.csv"
    images = tiny_run.folder / "images"
    for model in (tiny_archive, tiny_run.checkpoint):
        argv = ["evaluate", "--model", str(model), "--manifest", str(val), "--images", str(images)]
        assert main([*argv, "--json", "--workers", "0"]) == 0
        result = json.loads(capsys.readouterr().out)
        final = [r for r in tiny_run.result.history if r["split"] == "val"][-1]
        # --predictions' keys for the best guess, the top cell's and the baselines, beside the
        # calibration of the calibrated model the run ended with
        assert set(result) == {
            *("n", "accuracy", "median_km", "mean_km", "calibration"),
            *("rule", "top_cell", "baselines"),
        }
        assert result["n"] == final["n"]
        assert result["rule"] == "expected_distance"
        calibrated = final["calibrated"]
        assert result["accuracy"] == pytest.approx(calibrated["best_guess"]["accuracy"])
        assert result["median_km"] == pytest.approx(calibrated["best_guess"]["median_km"])
        assert result["top_cell"]["accuracy"] == pytest.approx(calibrated["accuracy"])
        assert (
            set(result["baselines"])
            == set(final["baselines"])
            == {*("densest", "geodesic_median", "prior, top cell", "prior, best guess")}
        )
        for name, baseline in final["baselines"].items():
            assert result["baselines"][name]["accuracy"] == pytest.approx(baseline["accuracy"])
            assert result["baselines"][name]["median_km"] == pytest.approx(baseline["median_km"])
        calibration = result["calibration"]
        after = final["calibration"]["after_in_sample"]
        assert calibration["ece"] == pytest.approx(after["ece"], abs=1e-6)
        assert calibration["nll"] == pytest.approx(after["nll"], abs=1e-5)
        assert len(calibration["bins"]) == 10
    assert main([*argv, "--workers", "0"]) == 0
    table = capsys.readouterr().out
    assert "2500 km" in table
    for row in ("best guess (expected_distance)", "top cell", "baseline: densest"):
        assert row in table


def test_evaluate_with_five_crops_scores_every_validation_photo(
    tiny_run: TinyRun,
    tiny_archive: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shapes: list[tuple[int, ...]] = []
    original = Predictor.__call__

    def spy(self: Predictor, images: torch.Tensor) -> Output:
        shapes.append(tuple(images.shape))
        return original(self, images)

    monkeypatch.setattr(Predictor, "__call__", spy)
    val = tiny_run.folder / "run" / "val.csv"
    images = tiny_run.folder / "images"
    argv = ["evaluate", "--model", str(tiny_archive), "--manifest", str(val), "--images"]
    assert main([*argv, str(images), "--five-crop", "--json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert shapes and all(shape[1:] == (5, 3, 32, 32) for shape in shapes)  # crops reached it
    final = [r for r in tiny_run.result.history if r["split"] == "val"][-1]
    assert result["n"] == final["n"]
    assert all(0.0 <= a <= 100.0 for a in result["accuracy"].values())  # percent


def test_evaluate_draws_the_reliability_diagram_and_writes_every_photos_reply(
    tiny_run: TinyRun, tiny_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = tiny_run.folder / "run" / "val.csv"
    plot, replies = tmp_path / "reliability.png", tmp_path / "replies.jsonl"
    argv = ["evaluate", "--model", str(tiny_archive), "--manifest", str(val), "--images"]
    assert (
        main(
            [
                *argv,
                str(tiny_run.folder / "images"),
                "--workers",
                "0",
                "--plot",
                str(plot),
                "--predictions-out",
                str(replies),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "calibration: ECE" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    lines = [json.loads(line) for line in replies.read_text().splitlines()]
    truth = read_manifest(val)
    assert [line["id"] for line in lines] == truth.image_ids
    assert lines[0]["lat"] == pytest.approx(truth.lat[0])
    version = read_bundle(tiny_archive).version
    for line in lines:
        assert errors(PREDICTION, line["reply"]) == []
        assert line["reply"]["model_version"] == version
        assert all(cell["radius_km"] > 0 for cell in line["reply"]["cells"])


def test_calibrate_writes_a_new_archive_with_a_new_version(
    tiny_run: TinyRun, tiny_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "calibrated.mar"
    photos = ["--manifest", str(tiny_run.folder / "meta.csv"), "--images"]
    argv = ["calibrate", "--model", str(tiny_archive), *photos, str(tiny_run.folder / "images")]
    assert main([*argv, "--out", str(out), "--workers", "0"]) == 0
    text = capsys.readouterr().out
    version = read_bundle(out).version
    assert f"{out}: model_version {version}" in text
    assert version != read_bundle(tiny_archive).version
    assert "after, cross-fitted" in text and "cells_2_10 " in text
    assert (
        main(
            [
                "calibrate",
                "--model",
                str(tiny_run.checkpoint),
                "--manifest",
                "m.csv",
                "--images",
                "i",
            ]
        )
        == 2
    )
    assert "must be a .mar archive" in capsys.readouterr().err


def test_five_crop_without_a_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("img_id,true_lat,true_lon,predicted_lat,predicted_lon\n")
    assert main(["evaluate", "--predictions", str(csv), "--five-crop"]) == 2
    assert "--five-crop needs --model" in capsys.readouterr().err
    assert main(["evaluate", "--predictions", str(csv), "--plot", "x.png"]) == 2
    assert "--plot needs --model" in capsys.readouterr().err


def test_evaluate_a_model_needs_manifest_and_images(
    tiny_archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--model", str(tiny_archive)]) == 2
    assert "--manifest and --images" in capsys.readouterr().err


def test_export_writes_the_archive_and_tells_its_version(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "--checkpoint", str(tiny_run.checkpoint), "--name", "geo", "--out"]
    assert main([*argv, str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'geo.mar'}: model_version geo-" in out
    assert (tmp_path / "geo.mar").is_file()


def test_data_split_reproduces_the_training_runs_split(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["data", "split", "--manifest", str(tiny_run.folder / "meta.csv")]
    assert main([*argv, "--out", str(tmp_path), "--val-fraction", "0.25", "--seed", "0"]) == 0
    assert "val.csv: 16 photos by 2 photographers" in capsys.readouterr().out
    ours = read_manifest(tmp_path / "val.csv").image_ids
    assert ours == read_manifest(tiny_run.folder / "run" / "val.csv").image_ids


def test_scenes_propagate_writes_the_completed_manifest(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (tiny_run.folder / "meta.csv").read_text().splitlines()
    header, rows = text[0], text[1:]
    stripped = [",".join(row.split(",")[:4]) + ",,," for row in rows[:3]]
    manifest = tmp_path / "geo.csv"
    manifest.write_text("\n".join([header, *stripped, *rows[3:]]) + "\n")
    out = tmp_path / "completed.csv"
    argv = ["scenes", "propagate", "--model", str(tiny_run.checkpoint), "--manifest"]
    assert (
        main(
            [
                *argv,
                str(manifest),
                "--images",
                str(tiny_run.folder / "images"),
                "--out",
                str(out),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert "3 kept" in capsys.readouterr().out
    completed = read_manifest(out)
    assert (completed.scenes >= 0).all()
    assert completed.s3_probabilities is not None
