"""TorchServe and Triton serve the same archive through the same Responder: for the development
photos they answer the same model version, the same best cell, the same probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


def test_both_servers_answer_the_development_photos_alike(
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
    assert len(images) == 100
    for a, b in zip(through_torchserve, through_triton, strict=True):
        assert isinstance(a, dict) and isinstance(b, dict)
        assert a["model_version"] == b["model_version"]
        assert a["best_guess"]["token"] == b["best_guess"]["token"]
        pa, pb = _probabilities(a), _probabilities(b)
        assert pa.keys() == pb.keys()
        assert max(abs(pa[t] - pb[t]) for t in pa) <= 1e-4
        assert a["scene"]["s3"]["label"] == b["scene"]["s3"]["label"]
