"""The wire contracts: the JSON Schemas that producers (image events), the model servers
(predictions) and the service (verdicts) are held to, loaded once and compiled; their
TypedDicts are contract_types.py. Both halves import them: the training side's replies are
checked against prediction.schema.json by the same code the service checks them with."""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from typing import Any, cast

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from geoverdict_common.contract_types import Prediction
from geoverdict_common.exceptions import ContractError

SCHEMA_DIR = importlib.resources.files("geoverdict_common") / "schemas"
IMAGE_EVENT = "image-event.schema.json"
PREDICTION = "prediction.schema.json"
VERDICT = "verdict.schema.json"


@cache
def _registry() -> Registry:
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text())))
        for path in SCHEMA_DIR.iterdir()
        if path.name.endswith(".schema.json")
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


@cache
def _fast(name: str) -> Any:
    """fastjsonschema's compiled validator (about 13x faster than jsonschema on events)."""
    schema = json.loads((SCHEMA_DIR / name).read_text())
    schema.pop("$schema", None)  # it knows drafts 4-7; these schemas use no 2020-12 keyword
    schema.pop("$id", None)
    return fastjsonschema.compile(schema)


def check(name: str, instance: Any) -> list[str]:
    """Like errors(), but fast for valid instances: the hot path of every message.

    Only instances the compiled validator refuses pay for jsonschema's full report."""
    try:
        _fast(name)(instance)
    except fastjsonschema.JsonSchemaValueException as exc:
        # jsonschema leaves formats such as date-time unchecked; then only this one speaks.
        got = repr(exc.value)[:64]
        return errors(name, instance) or [f"{exc.message.removeprefix('data.')} (got {got})"]
    return []


def checked_prediction(reply: Any) -> Prediction:
    """A model reply (or a cache entry) as a Prediction, if it keeps the contract; otherwise
    ContractError (reason `invalid_prediction`): the loop must never crash on what a model
    server, or whoever can write to the cache, sends."""
    problems = check(PREDICTION, reply)
    if not problems and "error" in reply:
        problems = ["an error reply where a prediction was expected"]
    if problems:
        raise ContractError(
            "model reply breaks prediction.schema.json: " + "; ".join(problems[:3]),
            "invalid_prediction",
        )
    return cast(Prediction, reply)


def _shortened(message: str) -> str:
    """The message's start and end (the rule it breaks) around an ellipsis when too long."""
    if len(message) <= MAX_PROBLEM_CHARS:
        return message
    return f"{message[: MAX_PROBLEM_CHARS - 60]}...{message[-57:]}"
