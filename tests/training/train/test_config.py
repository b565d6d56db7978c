"""The training config: YAML plus key=value overrides, every bad key or value named."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoverdict_training.exceptions import ConfigError
from geoverdict_training.train.config import TrainConfig, load_config, parse_overrides

BASE = {"manifest": "meta.csv", "images": "images"}


def test_yaml_and_overrides_make_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("manifest: m.csv\nimages: img\nlr: 0.1\nweight_decay: 1e-4\nscenes: [s3]\n")
    config = load_config(path, ["lr=0.001", "partitions=[[5, 200], [5, 50]]", "pretrained=false"])
    assert config.lr == 0.001
    assert config.weight_decay == 1e-4  # PyYAML reads 1e-4 as a string; still a number
    assert config.partitions == [[5, 200], [5, 50]]
    assert config.scenes == ["s3"] and config.pretrained is False
    assert [s.name for s in config.partition_specs()] == ["cells_5_200", "cells_5_50"]


def test_an_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key.*'lr_rate'"):
        TrainConfig.from_dict({**BASE, "lr_rate": 0.1})
    with pytest.raises(ConfigError, match="'batchsize'"):
        load_config(None, ["manifest=m.csv", "images=i", "batchsize=3"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("lr", "fast"),
        ("batch_size", 3.5),
        ("batch_size", True),
        ("pretrained", "yes"),
        ("scenes", "s3"),
        ("partitions", [[5, "x"]]),
        ("loss_weights", {"scene_s3": "high"}),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}': expected"):
        TrainConfig.from_dict({**BASE, key: value})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", 0, "must be >= 1"),
        ("optimizer", "rmsprop", "must be one of"),
        ("partitions", [[50, 10]], "tau_max must be > tau_min"),
        ("scenes", ["s4"], "distinct names"),
        ("resize", 100, "must be >= input_size"),
        ("val_fraction", 1.0, r"must be in \[0, 1\)"),
        ("decode", "gpu", "must be one of"),
        ("label_smoothing_km", [100.0, 50.0], "one tau >= 0"),
        ("label_smoothing_km", [-1.0, 0.0, 0.0], "one tau >= 0"),
    ],
)
def test_a_value_out_of_range_is_an_error_naming_the_key(
    key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'.*{message}"):
        TrainConfig.from_dict({**BASE, key: value})


def test_required_data_keys_are_named() -> None:
    with pytest.raises(ConfigError, match="'manifest': is required"):
        TrainConfig.from_dict({"images": "i"})


def test_a_scene_only_config_needs_no_partitions() -> None:
    config = TrainConfig.from_dict({**BASE, "scene_only": True, "partitions": []})
    assert config.partition_specs() == []


def test_overrides_must_be_key_value_pairs() -> None:
    assert parse_overrides(["lr=0.5", "out_dir="]) == {"lr": 0.5, "out_dir": ""}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])


def test_the_saved_config_reads_back_equal(tmp_path: Path) -> None:
    config = TrainConfig.from_dict({**BASE, "lr": 0.02, "trainable": ["blocks.6"]})
    config.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_a_config_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
