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
    """fastjsonschema's compiled validator (about 13x faster than jsonschema on events). For
    predictions, the cells are left to `cells_keep_contract`: a calibrated reply lists most of
    the model's cells, and the generated code spent 5 us on each (0.36 ms a reply)."""
    schema = json.loads((SCHEMA_DIR / name).read_text())
    schema.pop("$schema", None)  # it knows drafts 4-7; these schemas use no 2020-12 keyword
    schema.pop("$id", None)
    if name == PREDICTION:
        schema["$defs"]["prediction"]["properties"]["cells"]["items"] = {"type": "object"}
    return fastjsonschema.compile(schema)


def _is_number(value: Any, low: float, high: float) -> bool:
    """A JSON number (not a boolean) within [low, high]."""
    kind = type(value)
    return (kind is float or kind is int) and low <= value <= high


def cells_keep_contract(cells: Any) -> bool:
    """Whether every cell keeps prediction.schema.json's `cell` (required fields, types,
    ranges): the same answer as the schema (and a NaN refused, which its ranges let pass),
    for a fraction of the cost (tests/common/test_contract.py compares them on generated
    cells)."""
    if type(cells) is not list:
        return False
    inf = float("inf")
    for cell in cells:
        if type(cell) is not dict:
            return False
        try:
            token, level = cell["token"], cell["level"]
            lat, lon, probability = cell["lat"], cell["lon"], cell["probability"]
        except KeyError:
            return False
        if type(token) is not str:
            return False
        if not (type(level) is int or (type(level) is float and level.is_integer())):
            return False
        if not (0 <= level <= 30 and _is_number(lat, -90, 90) and _is_number(lon, -180, 180)):
            return False
        if not _is_number(probability, 0, 1):
            return False
        radius = cell.get("radius_km", 0.0)
        if not _is_number(radius, 0, inf):
            return False
    return True


def check(name: str, instance: Any) -> list[str]:
    """Like errors(), but fast for valid instances: the hot path of every message.

    Only instances the compiled validator refuses pay for jsonschema's full report."""
    try:
        _fast(name)(instance)
    except fastjsonschema.JsonSchemaValueException as exc:
        # jsonschema leaves formats such as date-time unchecked; then only this one speaks.
        got = repr(exc.value)[:64]
        return errors(name, instance) or [f"{exc.message.removeprefix('data.')} (got {got})"]
    if name == PREDICTION and "cells" in instance and not cells_keep_contract(instance["cells"]):
        return errors(name, instance) or ["cells: a cell breaks the contract"]
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
