"""What the service produces and accepts keeps the JSON Schemas."""

from __future__ import annotations

import copy
import json

from geoverdict_common import contract
from geoverdict_service.events import make_event, parse_event
from geoverdict_service.verdicts import VerdictPolicy, build_verdict
from tests.service import samples
from tests.service.samples import MODEL_VERSION, PARIS, confident_paris


def test_events_and_predictions_as_built_are_valid() -> None:
    event = make_event("post-1", image_bytes=b"\xff\xd8 jpeg", claim=PARIS)
    assert contract.errors(contract.IMAGE_EVENT, event) == []
    assert contract.errors(contract.IMAGE_EVENT, make_event("p", image_url="https://x/a.jpg")) == []
    assert contract.errors(contract.PREDICTION, confident_paris()) == []
    error = {"code": "truncated", "message": "ends"}
    failure = {"model_version": MODEL_VERSION, "error": error}
    assert contract.errors(contract.PREDICTION, failure) == []
    error["code"] = "gremlins"
    assert contract.errors(contract.PREDICTION, failure) != []


def test_verdict_schema_resolves_the_prediction_schema() -> None:
    event = parse_event(json.dumps(make_event("post-1", image_bytes=b"x", claim=PARIS)).encode())
    verdict = build_verdict(
        event,
        confident_paris(),
        VerdictPolicy(),
        None,
        cache_hit=False,
        image_sha256="0" * 64,
        timings_ms={"total": 3.0},
        provenance=samples.provenance(),
    )
    assert contract.errors(contract.VERDICT, verdict) == []
    # A cell is checked by the definition in prediction.schema.json.
    broken = copy.deepcopy(verdict)
    broken["location"]["cells"][1]["probability"] = 1.5
    del broken["post_id"]
    assert contract.errors(contract.VERDICT, broken) == [
        "(root): 'post_id' is a required property",
        "location/cells/1/probability: 1.5 is greater than the maximum of 1",
    ]


def test_problems_quote_a_huge_value_only_briefly() -> None:
    event = make_event("x" * 1_000_000, image_url="https://img.example/a.jpg")
    (problem,) = contract.errors(contract.IMAGE_EVENT, event)
    assert problem.startswith("data/post_id: 'xxx")
    assert problem.endswith("is too long")
    assert len(problem) < 300
