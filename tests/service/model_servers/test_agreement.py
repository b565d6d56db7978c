"""TorchServe and Triton serve the same archive through the same Responder, and `geoverdict
locate` answers through it in process: for the development photos all three answer the same
model version, the same probabilities and the same best guess (the point, not only its cell)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from geoverdict.locate import load_responder
from geoverdict_common.paths import model_store_dir
from geoverdict_service.model_servers.open_inference import OpenInferenceClient
from geoverdict_service.model_servers.tokens import TokenSource
from geoverdict_service.model_servers.torchserve import TorchServeClient
from geoverdict_stack.stack import Stack
from tests.stack_fixtures import triton_demo

# Every 20th development photo: 100 photos, both servers in about 10 s.
STEP = 20

pytestmark = [pytest.mark.integration, pytest.mark.shared_data]


def _probabilities(reply: dict[str, Any]) -> dict[str, float]:
    return {cell["token"]: cell["probability"] for cell in reply["cells"]}


def test_both_servers_and_locate_answer_the_development_photos_alike(
    stack: Stack, demo_model: str, shared_data: Path
) -> None:
    paths = sorted((shared_data / "im2gps3k-dev" / "images").glob("*.jpg"))[::STEP]
    images = [path.read_bytes() for path in paths]
    torchserve = TorchServeClient(
        stack.torchserve.url("inference"),
        demo_model,
        TokenSource(key_file=stack.torchserve_key_file),
    )
    served = triton_demo(stack)
    triton = OpenInferenceClient(
        served.url, served.model, TokenSource(key_file=served.key_file), auth_header="authorization"
    )
    try:
        through_torchserve = torchserve.predict_many(images)
        through_triton = triton.predict_many(images)
    finally:
        torchserve.close()
        triton.close()
    in_process = load_responder(model_store_dir() / "geoverdict.mar", "cpu").answer(images)
    assert len(images) == 100
    for a, b, c in zip(through_torchserve, through_triton, in_process, strict=True):
        assert isinstance(a, dict) and isinstance(b, dict)
        assert a["model_version"] == b["model_version"] == c["model_version"]
        pa, pb, pc = _probabilities(a), _probabilities(b), _probabilities(c)
        assert pa.keys() == pb.keys() == pc.keys()
        assert max(max(abs(pa[t] - pb[t]), abs(pa[t] - pc[t])) for t in pa) <= 1e-4
        guesses = [
            (r["best_guess"]["token"], r["best_guess"]["lat"], r["best_guess"]["lon"])
            for r in (a, b, c)
        ]
        assert guesses[0][0] == guesses[1][0] == guesses[2][0], guesses
        assert guesses[1][1:] == pytest.approx(guesses[0][1:], abs=1e-6), guesses
        assert guesses[2][1:] == pytest.approx(guesses[0][1:], abs=1e-6), guesses
        assert a["scene"]["s3"]["label"] == b["scene"]["s3"]["label"] == c["scene"]["s3"]["label"]
