"""The manifest validator refuses what a cluster would refuse: deliberately broken manifests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.manifests import ManifestError, problems, validate

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "consumer"},
    "spec": {
        "selector": {"matchLabels": {"app": "c"}},
        "template": {
            "metadata": {"labels": {"app": "c"}},
            "spec": {
                "terminationGracePeriodSeconds": 40,
                "containers": [{"name": "c", "image": "geoverdict/consumer:0.1.0"}],
            },
        },
    },
}
SCALED_OBJECT: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "consumer"},
    "spec": {
        "scaleTargetRef": {"name": "consumer"},
        "triggers": [{"type": "kafka", "metadata": {"lagThreshold": "500"}}],
    },
}
SERVICE_MONITOR: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "consumer"},
    "spec": {"selector": {"matchLabels": {"app": "c"}}, "endpoints": [{"port": "metrics"}]},
}
PROMETHEUS_RULE: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "alerts"},
    "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "2m"}]}]},
}


def broken(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `doc` with the field at the dotted `path` set to `value` (None: removed)."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize("doc", [DEPLOYMENT, SCALED_OBJECT, SERVICE_MONITOR, PROMETHEUS_RULE])
def test_valid_manifests_pass(doc: dict[str, Any]) -> None:
    validate(doc)


@pytest.mark.parametrize(
    ("doc", "path", "value", "says"),
    [
        # a number where Kubernetes wants an integer, a misspelt field, a missing image
        (DEPLOYMENT, "spec.template.spec.terminationGracePeriodSeconds", "forty", "forty"),
        (DEPLOYMENT, "spec.template.spec.readinesProbe", {}, "readinesProbe"),
        (DEPLOYMENT, "spec.selector", None, "selector"),
        (SCALED_OBJECT, "spec.triggers", None, "triggers"),
        (SCALED_OBJECT, "spec.maxReplicas", 6, "maxReplicas"),  # it is maxReplicaCount
        (SERVICE_MONITOR, "spec.endpoints.0.intervall", "15s", "intervall"),
        (PROMETHEUS_RULE, "spec.groups.0.rules.0.for", "5 minutes", "5 minutes"),
    ],
    ids=["type", "unknown-field", "missing", "keda-missing", "keda-unknown", "smon", "rule"],
)
def test_broken_manifests_fail_naming_the_field(
    doc: dict[str, Any], path: str, value: Any, says: str
) -> None:
    with pytest.raises(ManifestError, match=says) as caught:
        validate(broken(doc, path, value))
    assert doc["kind"] in str(caught.value)


def test_a_kind_without_schema_is_refused() -> None:
    doc = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "x"}}
    assert problems([DEPLOYMENT, doc]) == [
        "ScaledJob x: (top): no schema for keda.sh/v1alpha1 ScaledJob in Kubernetes 1.37.0 "
        "nor in schemas/"
    ]
