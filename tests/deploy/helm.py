"""Helm for the chart's tests: built once from the Go module proxy (deploy/helm/install-helm.sh,
which `make helm` runs too), then `helm lint` and `helm template` of deploy/helm/geoverdict."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import KUBERNETES_VERSION
from tests.repo import REPO_ROOT

CHART = REPO_ROOT / "deploy" / "helm" / "geoverdict"
INSTALL = REPO_ROOT / "deploy" / "helm" / "install-helm.sh"
GO_MISSING = 3  # install-helm.sh's status when Helm is not built and Go is absent
# The variants `make test` renders: values files in the chart (none: the defaults).
VARIANTS = {
    "default": (),
    "gpu": (CHART / "ci" / "gpu-values.yaml",),
    "keda": (CHART / "ci" / "keda-values.yaml",),
    "triton": (CHART / "ci" / "triton-values.yaml",),
    # the one-node cluster's (deploy/cluster/, issue 27)
    "cluster": (CHART.parent.parent / "cluster" / "values.yaml",),
}


@functools.cache
def helm_binary() -> Path:
    """The Helm binary, built on first use; the test skips where Go is absent."""
    result = subprocess.run([str(INSTALL)], capture_output=True, text=True)
    if result.returncode == GO_MISSING:
        pytest.skip(f"Helm is not built and Go is absent: {result.stderr.strip()}")
    if result.returncode != 0:
        raise RuntimeError(f"{INSTALL.name} failed:\n{result.stderr}")
    return Path(result.stdout.strip())


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Helm on the chart's checkout."""
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, cwd=REPO_ROOT
    )


def template_args(values: tuple[Path, ...], sets: tuple[str, ...] = ()) -> list[str]:
    """`helm template` arguments for a release named `geoverdict` of the chart."""
    args = ["template", "geoverdict", str(CHART), "--kube-version", KUBERNETES_VERSION]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render(values: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The manifests `helm template` renders with these values files and --set items."""
    result = helm(*template_args(values, sets))
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    """The one manifest of this kind for this component (consumer, torchserve, redis...)."""
    found = [
        doc
        for doc in docs
        if doc["kind"] == kind
        and doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    if len(found) != 1:
        raise LookupError(f"{len(found)} {kind} manifests for {component}")
    return found[0]


def container(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The first container of a component's Deployment (the consumer, the model server)."""
    spec = find(docs, "Deployment", component)["spec"]["template"]["spec"]
    return dict(spec["containers"][0])
