"""The wire contracts: every schema is valid JSON Schema 2020-12, and a reply breaking the
prediction contract is refused with the reason its dead letter carries."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from geoverdict_common import contract
from geoverdict_common.contract import checked_prediction
from geoverdict_common.exceptions import ContractError


@pytest.mark.parametrize("name", [contract.IMAGE_EVENT, contract.PREDICTION, contract.VERDICT])
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    Draft202012Validator.check_schema(json.loads((contract.SCHEMA_DIR / name).read_text()))


@pytest.mark.parametrize(
    "reply",
    [{}, {"model_version": "v", "cells": "not a list"}, {"error": "a string, not an object"}],
    ids=["empty", "wrong type", "bad error"],
)
def test_a_reply_breaking_the_contract_is_refused_with_its_reason(reply: dict) -> None:
    with pytest.raises(ContractError) as excinfo:
        checked_prediction(reply)
    assert excinfo.value.reason == "invalid_prediction"
