"""The cluster proof's pure parts: what it reads from the metrics API and what it loads (the
proof itself: `geoverdict cluster proof`, docs/operations.md "A one-node cluster")."""

from __future__ import annotations

import re

import pytest
import yaml

from geoverdict_cluster.proof import IMAGES, PARTITIONS, _quantity
from tests.repo import REPO_ROOT

CLUSTER = REPO_ROOT / "deploy" / "cluster"


@pytest.mark.parametrize(("text", "value"), [("2513", 2513.0), ("12500m", 12.5), ("3k", 3000.0)])
def test_lag_quantities(text: str, value: float) -> None:
    assert _quantity(text) == value


def test_every_image_the_values_name_is_loaded_into_containerd() -> None:
    values = yaml.safe_load((CLUSTER / "values.yaml").read_text())
    named = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if {"repository", "tag"} <= node.keys():
                named.add(f"{node['repository']}:{node['tag']}")
                assert node["pullPolicy"] == "Never"  # nothing can be pulled there
            for child in node.values():
                walk(child)

    walk(values)
    loaded = set(re.findall(r"localhost/[\w./-]+:\w+", (CLUSTER / "load-images.sh").read_text()))
    assert named <= loaded == set(IMAGES)


def test_keda_never_asks_for_more_consumers_than_partitions() -> None:
    keda = yaml.safe_load((CLUSTER / "values.yaml").read_text())["consumer"]["autoscaling"]["keda"]
    assert keda["maxReplicas"] == PARTITIONS and keda["enabled"]
