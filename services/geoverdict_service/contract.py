"""The JSON Schemas shared with producers and the model side, loaded once and compiled."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).parent / "schemas"
IMAGE_EVENT = "image-event.schema.json"
PREDICTION = "prediction.schema.json"
VERDICT = "verdict.schema.json"


@cache
def _registry() -> Registry:
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text())))
        for path in SCHEMA_DIR.glob("*.schema.json")
    ]
    return Registry().with_resources(resources)


MAX_PROBLEM_CHARS = 200  # jsonschema quotes the offending value, which may be megabytes


@cache
def validator(name: str) -> Draft202012Validator:
    """A compiled validator for one schema file of SCHEMA_DIR (formats checked)."""
    schema = json.loads((SCHEMA_DIR / name).read_text())
    return Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())


def errors(name: str, instance: Any) -> list[str]:
    """Human-readable problems of `instance` against schema `name`; empty when valid."""
    found = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {_shortened(e.message)}"
        for e in found
    ]


def _shortened(message: str) -> str:
    """The message's start and end (the rule it breaks) around an ellipsis when too long."""
    if len(message) <= MAX_PROBLEM_CHARS:
        return message
    return f"{message[: MAX_PROBLEM_CHARS - 60]}...{message[-57:]}"
