"""Triton refuses a request without the secret in the configuration the deployments render: the
real tritonserver (the local stack's, Triton 2.51 as in the image) started through the image's
entrypoint script with the arguments of docker-compose.triton.yml and of the chart, read from
`compose config` and `helm template`, so that a change to either is what gets tested. Container
paths and ports are the only things mapped to local ones; the image's model store is
model_store/, which the image copies."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from geoverdict_stack import prerequisites, process
from geoverdict_stack.ports import HOST, free_ports
from geoverdict_stack.triton import TritonServer
from tests.deploy.compose import COMPOSE, TRITON, environment, merged
from tests.deploy.helm import container, render
from tests.repo import REPO_ROOT
from tests.service.conftest import jpeg

pytestmark = pytest.mark.server

ENTRYPOINT = REPO_ROOT / "deploy" / "triton" / "entrypoint.sh"
MODEL_STORE = REPO_ROOT / "model_store"  # what deploy/triton/Dockerfile copies into the image
MODEL = "geoverdict"  # served under its archive's name; the consumers' default model name


@dataclass(frozen=True)
class Rendered:
    """What a deployment runs Triton with: the entrypoint's arguments, the environment, and the
    secret it mounts (None: the entrypoint makes one, as in docker-compose)."""

    arguments: list[str]
    environment: dict[str, str]
    secret: str | None


class RenderedTriton(TritonServer):
    """The stack's tritonserver started the way a deployment starts it."""

    def __init__(self, run_dir: Path, rendered: Rendered) -> None:
        http, metrics = free_ports(2)
        super().__init__(run_dir, http, metrics, MODEL_STORE)
        self.rendered = rendered

    def prepare(self) -> None:
        super().prepare()
        # The image's python3 is the one with the model's packages: here, this environment's,
        # through a wrapper. Triton's Python stub finds its prefix through PATH's python3, and
        # a virtual environment's there would put its numpy 2 ahead of the stack's numpy 1.
        python3 = self.home / "bin" / "python3"
        python3.parent.mkdir(parents=True, exist_ok=True)
        python3.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        python3.chmod(0o755)
        if self.rendered.secret is not None:  # a Kubernetes Secret, mounted
            self.inference_key_file.parent.mkdir(parents=True, exist_ok=True)
            key = {"inference": {"key": self.rendered.secret}}
            self.inference_key_file.write_text(json.dumps(key))

    def command(self) -> Sequence[str]:
        local = {
            "--model-store": str(MODEL_STORE),
            "--repository": str(self.repository),
            "--inference-key": str(self.inference_key_file),
            "--http-port": str(self.http_port),
            "--metrics-port": str(self.metrics_port),
        }
        args = list(self.rendered.arguments)
        server = args.index("--") + 1
        args[server] = str(prerequisites.triton(fetch=False).server)
        for flag, value in local.items():
            args[args.index(flag) + 1] = value
        stray = [a for a in args if a.startswith("/") and a not in {*local.values(), args[server]}]
        if stray:  # a new container path: map it here, or the run would not be the deployment's
            raise AssertionError(f"container paths this test does not map: {stray}")
        # Local only: the stack's backends (its Python stub) and loopback.
        return [
            "sh",
            str(ENTRYPOINT),
            *args,
            "--backend-directory",
            str(self.backends),
            "--http-address",
            HOST,
            "--metrics-address",
            HOST,
        ]

    def environment(self) -> Mapping[str, str]:
        path = f"{self.home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**super().environment(), **self.rendered.environment, "PATH": path}


def from_compose() -> Rendered:
    triton = merged([COMPOSE, TRITON])["triton"]
    return Rendered([str(a) for a in triton["command"]], environment(triton), None)


def from_chart() -> Rendered:
    triton = container(render(sets=("modelServer=triton",)), "triton")
    env = {e["name"]: e["value"] for e in triton["env"]}
    return Rendered(list(triton["args"]), env, "the-operator-s-secret-" + "0" * 32)


def _request(url: str, key: str | None, body: bytes | None = None, length: int = 0) -> int:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    if length:
        headers["Inference-Header-Content-Length"] = str(length)
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _image_request() -> tuple[bytes, int]:
    """One image as the consumer sends it: a binary BYTES tensor after a JSON header."""
    image = jpeg(7, size=96)
    data = len(image).to_bytes(4, "little") + image
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE",
                    "shape": [1, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": "REPLY"}],
        }
    ).encode()
    return header + data, len(header)


@pytest.fixture(params=["compose", "chart"])
def triton(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RenderedTriton]:
    rendered = {"compose": from_compose, "chart": from_chart}[request.param]()
    server = RenderedTriton(tmp_path, rendered)
    record, _ = server.start()
    try:
        yield server
    finally:
        process.stop(record)


def test_triton_refuses_every_request_without_the_secret(triton: RenderedTriton) -> None:
    base = triton.url()
    secret = triton.secret()
    if triton.rendered.secret is not None:
        assert secret == triton.rendered.secret  # the mounted Secret's, not a new one
    # Probes need no secret: health, and the model readiness the chart probes.
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready"):
        assert _request(base + path, None) == 200, path
    body, length = _image_request()
    infer = f"{base}/v2/models/{MODEL}/infer"
    for key in (None, "not-the-secret"):
        assert _request(infer, key, body, length) == 403
        assert _request(f"{base}/v2/repository/index", key, b"{}") == 403
        assert _request(f"{base}/v2/models/{MODEL}/config", key) == 403
    assert _request(infer, secret, body, length) == 200
    assert _request(f"{base}/v2/repository/index", secret, b"{}") == 200
