"""Validates Kubernetes manifests without a cluster: built-in kinds against the schemas of a
Kubernetes release (kubernetes-validate bundles them), custom resources against the CRD schemas
kept in tests/deploy/schemas/. Unknown fields are errors, as in `kubectl apply`'s strict field
validation (the API server would otherwise drop them without a word)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

# The release the chart is checked against (and that `helm template --kube-version` reports).
KUBERNETES_VERSION = "1.37.0"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
# (apiVersion, kind) -> the file holding its schema (a CRD, or its schema as JSON)
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}


class ManifestError(Exception):
    """A manifest that a cluster would refuse (or silently change)."""


def strict(schema: Any) -> Any:
    """The schema with unknown properties refused wherever it lists the known ones."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The strict JSON Schema of a custom resource kind, from the CRD kept in schemas/."""
    path = SCHEMAS / CUSTOM_RESOURCES[(api_version, kind)]
    if path.suffix == ".json":
        return dict(strict(json.loads(path.read_text())))
    crd = yaml.safe_load(path.read_text())
    version = api_version.rsplit("/", 1)[1]
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return dict(strict(served["schema"]["openAPIV3Schema"]))
    raise ManifestError(f"{path.name} has no version {version}")


def _where(doc: dict[str, Any], path: Iterable[Any]) -> str:
    name = (doc.get("metadata") or {}).get("name", "?")
    field = ".".join(str(p) for p in path) or "(top)"
    return f"{doc.get('kind', '?')} {name}: {field}"


def validate(doc: dict[str, Any], kubernetes_version: str = KUBERNETES_VERSION) -> None:
    """Raise ManifestError naming the resource and the field when `doc` is invalid."""
    key = (str(doc.get("apiVersion")), str(doc.get("kind")))
    if key in CUSTOM_RESOURCES:
        validator = jsonschema.Draft7Validator(crd_schema(*key))
        error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
        if error is not None:
            raise ManifestError(f"{_where(doc, error.absolute_path)}: {error.message}")
        return
    try:
        kubernetes_validate.validate(doc, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ManifestError(f"{_where(doc, exc.absolute_path)}: {exc.message}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ManifestError(
            f"{_where(doc, [])}: no schema for {key[0]} {key[1]} in Kubernetes "
            f"{kubernetes_version} nor in {SCHEMAS.name}/"
        ) from exc


def problems(docs: Iterable[dict[str, Any]]) -> list[str]:
    """What is wrong with each manifest (empty: all valid)."""
    found = []
    for doc in docs:
        try:
            validate(doc)
        except ManifestError as exc:
            found.append(str(exc))
    return found
