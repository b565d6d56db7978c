"""The TorchServe container's health check: /ping with the inference key, healthy only when
TorchServe says so."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from geoverdict_common.exceptions import InferenceKeyError
from geoverdict_common.inference_key import write_inference_key
from geoverdict_modelserver.torchserve_health import healthy


class _Ping(BaseHTTPRequestHandler):
    status = "Healthy"

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer inf-1":
            self.send_error(401)
            return
        body = json.dumps({"status": type(self).status}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def ping() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ping"
    server.shutdown()
    server.server_close()
    _Ping.status = "Healthy"


def test_healthy_only_when_torchserve_answers_healthy_to_the_inference_key(
    tmp_path: Path, ping: str
) -> None:
    key_file = tmp_path / "key_file.json"
    write_inference_key(key_file, "inf-1")
    assert healthy(key_file, ping)
    _Ping.status = "Partial Healthy"
    assert not healthy(key_file, ping)


def test_no_key_file_is_unhealthy(tmp_path: Path, ping: str) -> None:
    with pytest.raises(InferenceKeyError):
        healthy(tmp_path / "key_file.json", ping)
