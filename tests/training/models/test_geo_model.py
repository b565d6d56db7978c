"""GeoModel and ModelSpec: heads per partition and scene set, for every registered backbone."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.models.backbones import list_backbones
from geoverdict_training.models.geo_model import GeoModel, ModelSpec

PARTITIONS = (("cells_50_5000", 7), ("cells_50_2000", 11), ("cells_50_1000", 13))


@pytest.mark.parametrize("backbone", list_backbones())
def test_forward_gives_one_finite_logit_row_per_head(backbone: str) -> None:
    spec = ModelSpec(backbone=backbone, partitions=PARTITIONS, dropout=0.1)
    model = GeoModel(spec).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 224, 224))
    expected = {
        "cells_50_5000": 7,
        "cells_50_2000": 11,
        "cells_50_1000": 13,
        "scene_s3": 3,
        "scene_s16": 16,
        "scene_s365": 365,
    }
    assert list(logits) == list(expected)  # partitions coarse -> fine, then scenes
    for name, num_classes in expected.items():
        assert logits[name].shape == (2, num_classes)
        assert torch.isfinite(logits[name]).all()


def test_scene_heads_are_configurable() -> None:
    spec = ModelSpec("efficientnet_lite0", PARTITIONS[:1], scenes=("s3",))
    with torch.no_grad():
        logits = GeoModel(spec).eval()(torch.randn(1, 3, 64, 64))
    assert list(logits) == ["cells_50_5000", "scene_s3"]


def test_a_scene_only_model_for_the_helper_network() -> None:
    spec = ModelSpec("efficientnet_lite0", partitions=(), scenes=("s3", "s16", "s365"))
    assert spec.partition_names == []
    assert list(spec.heads) == ["scene_s3", "scene_s16", "scene_s365"]


def test_the_spec_round_trips_through_json_and_rebuilds_the_same_model() -> None:
    spec = ModelSpec("efficientnet_lite0", PARTITIONS, scenes=("s3", "s365"), dropout=0.2)
    restored = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert restored == spec

    original = GeoModel(spec)
    rebuilt = GeoModel(restored)
    rebuilt.load_state_dict(original.state_dict())  # strict: same parameters, same shapes
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first, second = original.eval()(x), rebuilt.eval()(x)
    assert all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"backbone": "vgg16"}, "backbone"),
        ({"partitions": (("cells", 0),)}, "partitions"),
        ({"partitions": (("cells", 3), ("cells", 4))}, "partitions"),
        ({"partitions": (("scene_s3", 3),)}, "partitions"),
        ({"partitions": (("cells.fine", 3),)}, "partitions"),
        ({"scenes": ("s4",)}, "scenes"),
        ({"partitions": (), "scenes": ()}, "no head"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_a_bad_spec_names_the_key(changes: dict[str, Any], key: str) -> None:
    fields: dict[str, Any] = {"backbone": "resnet18", "partitions": PARTITIONS, **changes}
    with pytest.raises(ConfigError, match=key):
        ModelSpec(**fields)


def test_from_dict_refuses_unknown_keys() -> None:
    data = {**ModelSpec("resnet18", PARTITIONS).to_dict(), "drop_out": 0.1}
    with pytest.raises(ConfigError, match="drop_out"):
        ModelSpec.from_dict(data)


def test_images_of_the_wrong_shape_are_refused() -> None:
    model = GeoModel(ModelSpec("efficientnet_lite0", PARTITIONS))
    with pytest.raises(TensorError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 64, 64))
