"""The wire contracts: every schema is valid JSON Schema 2020-12, and a reply breaking the
prediction contract is refused with the reason its dead letter carries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from geoverdict_common import contract
from geoverdict_common.contract import checked_prediction
from geoverdict_common.exceptions import ContractError
from tests.service import samples


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


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-200, 200),
    st.text(max_size=3),
    st.floats(-200, 200, allow_nan=False),
    st.just(1.0),
    st.just(30.5),
    st.lists(st.none(), max_size=1),
)
_FIELDS = ("token", "level", "lat", "lon", "probability", "radius_km", "other")


@settings(max_examples=400, deadline=None)
@given(
    cells=st.lists(
        st.one_of(
            st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=7),
            st.fixed_dictionaries(
                {
                    "token": st.text(max_size=4),
                    "level": st.integers(-1, 31),
                    "lat": st.floats(-91, 91, allow_nan=False),
                    "lon": st.floats(-181, 181, allow_nan=False),
                    "probability": st.floats(-0.1, 1.1, allow_nan=False),
                },
                optional={"radius_km": st.floats(-1, 1e4, allow_nan=False)},
            ),
            st.integers(),
        ),
        max_size=4,
    )
)
def test_the_fast_cell_check_answers_as_the_schema(cells: list[Any]) -> None:
    schema = contract.validator(contract.PREDICTION).schema["$defs"]["cell"]
    cell_ok = Draft202012Validator(schema)
    expected = all(cell_ok.is_valid(cell) for cell in cells)
    assert contract.cells_keep_contract(cells) is expected


def test_a_reply_with_one_broken_cell_is_refused_by_the_fast_path() -> None:
    reply = samples.confident_paris()
    assert contract.check(contract.PREDICTION, reply) == []
    reply["cells"][-1]["probability"] = 1.5
    problems = contract.check(contract.PREDICTION, reply)
    assert problems and "cells" in problems[0]
