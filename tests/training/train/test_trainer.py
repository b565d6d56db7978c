"""Training runs end to end on CPU: losses fall, runs resume at their step, bad resumes say why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from geoverdict_training.data.manifest import read_manifest
from geoverdict_training.exceptions import CheckpointError, ConfigError
from geoverdict_training.train.checkpoint import load_checkpoint
from geoverdict_training.train.config import TrainConfig
from geoverdict_training.train.trainer import decodes_on_device, train
from tests.training.conftest import TinyRun
from tests.training.synthetic import tiny_config, write_collection

GEO_HEADS = ("loss_cells_2_100", "loss_cells_2_10")
SCENE_HEADS = ("loss_scene_s3", "loss_scene_s16", "loss_scene_s365")


def _mean(history: list[dict[str, float]], keys: tuple[str, ...]) -> float:
    return float(np.mean([sum(r[k] for k in keys) for r in history]))


def test_the_loss_of_both_tasks_goes_down(tiny_run: TinyRun) -> None:
    train_records = [r for r in tiny_run.result.history if r["split"] == "train"]
    assert [r["step"] for r in train_records] == list(range(1, 31))
    first, last = train_records[:5], train_records[-5:]
    assert _mean(last, GEO_HEADS) < 0.6 * _mean(first, GEO_HEADS)
    assert _mean(last, SCENE_HEADS) < 0.3 * _mean(first, SCENE_HEADS)


def test_label_smoothing_trains_the_cell_heads_on_the_soft_targets(tmp_path: Path) -> None:
    write_collection(tmp_path, per_place=4)
    # A tau far wider than the Earth spreads every target evenly: nothing left to learn, so
    # the cell heads' loss stays at log(classes), where hard labels fall (the test above).
    config = tiny_config(tmp_path, max_steps=20, calibrate=False, label_smoothing_km=[1e6, 1e6])
    result = train(TrainConfig.from_dict(config))
    assert result.checkpoint is not None
    partitions = load_checkpoint(result.checkpoint)["partitions"]
    floor = sum(np.log(len(partition["tokens"])) for partition in partitions)
    last = [r for r in result.history if r["split"] == "train"][-5:]
    assert _mean(last, GEO_HEADS) > 0.95 * floor
    assert np.isfinite(_mean(last, GEO_HEADS))


def test_a_run_folder_holds_config_split_cells_metrics_and_checkpoints(tiny_run: TinyRun) -> None:
    run = tiny_run.folder / "run"
    config = TrainConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert config.max_steps == 30
    train_ids = set(read_manifest(run / "train.csv").image_ids)
    val = read_manifest(run / "val.csv")
    assert val.authors and not train_ids & set(val.image_ids)
    train_authors = set(read_manifest(run / "train.csv").authors or [])
    assert not train_authors & set(val.authors)  # photographers held out whole
    assert {p.name for p in (run / "cells").iterdir()} == {"cells_2_100.csv", "cells_2_10.csv"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val_records = [r for r in records if r["split"] == "val"]
    assert val_records[-1]["step"] == 30 and val_records[-1]["n"] == len(val)
    assert set(val_records[-1]["accuracy"]) == {"1", "25", "200", "750", "2500"}
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last.pt", "step_0000010.pt", "step_0000020.pt", "step_0000030.pt"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 30 and state["config"]["max_steps"] == 30


def test_resume_continues_at_the_same_step_as_if_never_stopped(tiny_run: TinyRun) -> None:
    checkpoint = tiny_run.folder / "run" / "checkpoints" / "step_0000020.pt"
    out = tiny_run.folder / "resumed"
    config = tiny_config(
        tiny_run.folder, max_steps=30, checkpoint_every=10, resume=str(checkpoint), out_dir=str(out)
    )
    result = train(TrainConfig.from_dict(config))
    steps = [r["step"] for r in result.history if r["split"] == "train"]
    assert steps == list(range(21, 31))
    resumed = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    uninterrupted = load_checkpoint(tiny_run.checkpoint)["model"]
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, msg=name)


def test_resuming_with_other_model_settings_says_why(tiny_run: TinyRun) -> None:
    config = tiny_config(
        tiny_run.folder,
        backbone="resnet34",
        resume=str(tiny_run.checkpoint),
        out_dir=str(tiny_run.folder / "other"),
    )
    with pytest.raises(CheckpointError, match="backbone: checkpoint 'resnet18', config 'resnet34'"):
        train(TrainConfig.from_dict(config))


def test_resuming_from_a_file_that_is_no_checkpoint_says_so(tmp_path: Path) -> None:
    write_collection(tmp_path, per_place=2)
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train(TrainConfig.from_dict(tiny_config(tmp_path, resume=str(bogus))))


def test_the_helper_scene_network_trains_scene_heads_only(tmp_path: Path) -> None:
    write_collection(tmp_path, per_place=8)
    config = tiny_config(tmp_path, scene_only=True, max_steps=12, val_fraction=0.0)
    result = train(TrainConfig.from_dict(config))
    records = [r for r in result.history if r["split"] == "train"]
    assert not any(key.startswith("loss_cells") for key in records[-1])
    assert _mean(records[-3:], SCENE_HEADS) < 0.5 * _mean(records[:3], SCENE_HEADS)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["spec"]["partitions"] == [] and state["partitions"] == []


def test_a_frozen_backbone_keeps_its_weights_and_trains_the_rest(tmp_path: Path) -> None:
    write_collection(tmp_path, per_place=4)
    config = tiny_config(
        tmp_path,
        freeze_backbone=True,
        trainable=["layer4"],
        max_steps=3,
        val_fraction=0.0,
        checkpoint_every=1,
    )
    train(TrainConfig.from_dict(config))
    first = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_0000001.pt")["model"]
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_0000003.pt")["model"]
    assert torch.equal(first["backbone.conv1.weight"], last["backbone.conv1.weight"])
    assert torch.equal(first["backbone.bn1.running_mean"], last["backbone.bn1.running_mean"])
    assert not torch.equal(
        first["backbone.layer4.0.conv1.weight"], last["backbone.layer4.0.conv1.weight"]
    )
    assert not torch.equal(first["heads.scene_s3.weight"], last["heads.scene_s3.weight"])


def test_an_unknown_trainable_prefix_is_an_error_naming_the_key(tmp_path: Path) -> None:
    write_collection(tmp_path, per_place=4)
    config = tiny_config(tmp_path, freeze_backbone=True, trainable=["layer9"], val_fraction=0.0)
    with pytest.raises(ConfigError, match=r"'trainable'.*layer9"):
        train(TrainConfig.from_dict(config))


def test_the_last_checkpoint_carries_temperatures_fitted_on_the_held_out_photographers(
    tiny_run: TinyRun,
) -> None:
    final = [r for r in tiny_run.result.history if r["split"] == "val"][-1]
    report = final["calibration"]
    assert report["photos"] == final["n"]
    assert set(report["temperatures"]) == {
        "cells_2_100",
        "cells_2_10",
        "scene_s3",
        "scene_s16",
        "scene_s365",
    }
    assert report["after_in_sample"]["nll"] <= report["before"]["nll"] + 1e-9
    assert set(final["calibrated"]["accuracy"]) == {"1", "25", "200", "750", "2500"}
    last = load_checkpoint(tiny_run.folder / "run" / "checkpoints" / "last.pt")
    assert last["calibration"]["temperatures"] == report["temperatures"]
    assert last["calibration"]["hierarchy"] == report["hierarchy_temperature"]
    earlier = load_checkpoint(tiny_run.folder / "run" / "checkpoints" / "step_0000010.pt")
    assert "calibration" not in earlier  # only the end of the run is calibrated


def test_calibrate_false_leaves_the_model_uncalibrated(tmp_path: Path) -> None:
    write_collection(tmp_path, per_place=4)
    config = tiny_config(tmp_path, max_steps=2, calibrate=False)
    result = train(TrainConfig.from_dict(config))
    assert result.checkpoint is not None
    assert "calibration" not in load_checkpoint(result.checkpoint)
    assert "calibration" not in [r for r in result.history if r["split"] == "val"][-1]


@pytest.mark.parametrize(
    ("decode", "device", "on_device"),
    [
        ("auto", "cuda", True),
        ("auto", "cpu", False),
        ("pillow", "cuda", False),
        ("device", "cpu", True),
    ],
)
def test_photos_are_decoded_on_a_gpu_unless_told_otherwise(
    decode: str, device: str, on_device: bool
) -> None:
    config = TrainConfig.from_dict({"manifest": "m.csv", "images": "i", "decode": decode})
    assert decodes_on_device(config, torch.device(device)) is on_device
    assert config.compile is False  # not measured on a GPU yet: off
