"""The TorchServe client against a fake TorchServe on 127.0.0.1: retries, keys, per-item errors."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from geoverdict_service.exceptions import (
    BadImageError,
    InferenceUnavailableError,
    InvalidSettingsError,
)
from geoverdict_service.model_servers.tokens import TokenSource
from geoverdict_service.model_servers.torchserve import TorchServeClient
from tests.service.localhttp import LocalServer, Reply, Seen, closed_port
from tests.service.samples import MODEL_VERSION, confident_paris

MODEL = "geoverdict"
PREDICTION = confident_paris()
# What TorchServe 0.12 answers to a wrong or expired key (InvalidKeyException -> 400).
INVALID_KEY = Reply(
    400,
    json.dumps(
        {
            "code": 400,
            "type": "InvalidKeyException",
            "message": "Token Authentication failed. Token either incorrect, expired, or not "
            "provided correctly",
        }
    ).encode(),
)


def per_item_error(code: str) -> Reply:
    """The handler's answer for one bad image: HTTP 200 with an error object."""
    body = {"model_version": MODEL_VERSION, "error": {"code": code, "message": f"{code} image"}}
    return Reply(200, json.dumps(body).encode())


class FakeTorchServe:
    """Checks the bearer key, answers /ping, and plays `script` before predicting normally."""

    def __init__(self) -> None:
        self.key = "key-1"
        self.refusal = INVALID_KEY
        self.script: list[Reply] = []
        self.server = LocalServer(self.respond)

    def respond(self, request: Seen) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return self.refusal
        if request.path == "/ping":
            return Reply(200, b'{"status": "Healthy"}')
        if request.path != f"/predictions/{MODEL}":
            return Reply(404, b'{"code": 404, "type": "ModelNotFoundException"}')
        if self.script:
            return self.script.pop(0)
        if not request.body:
            return per_item_error("empty")
        return Reply(200, json.dumps(PREDICTION).encode())

    @property
    def predictions(self) -> list[Seen]:
        return [r for r in self.server.requests if r.path.startswith("/predictions/")]


def write_keys(path: Path, inference_key: str) -> None:
    """TorchServe's key_file.json."""
    keys = {"management": {"key": "m"}, "inference": {"key": inference_key}, "API": {"key": "a"}}
    path.write_text(json.dumps(keys))


@pytest.fixture
def torchserve() -> Iterator[FakeTorchServe]:
    fake = FakeTorchServe()
    with fake.server:
        yield fake


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key_file.json"
    write_keys(path, "key-1")
    return path


ClientFor = Callable[..., TorchServeClient]


@pytest.fixture
def client_for(key_file: Path) -> Iterator[ClientFor]:
    """TorchServeClients reading `key_file`, with millisecond backoff; closed after the test."""
    made: list[TorchServeClient] = []

    def make(url: str, **options: object) -> TorchServeClient:
        settings: dict[str, object] = {"retries": 3, "backoff_s": 0.01, "timeout_s": 5.0}
        settings.update(options)
        client = TorchServeClient(url, MODEL, TokenSource(key_file=key_file), **settings)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_predicts_with_the_bearer_key_over_one_kept_alive_connection(
    torchserve: FakeTorchServe, client_for: ClientFor
) -> None:
    seconds: list[float] = []
    client = client_for(torchserve.server.url, observe=seconds.append, concurrency=1)
    assert client.predict_many([b"\xff\xd8 jpeg"] * 5) == [PREDICTION] * 5
    requests = torchserve.predictions
    assert len(requests) == 5
    assert requests[0].headers["Authorization"] == "Bearer key-1"
    assert requests[0].headers["Content-Type"] == "application/octet-stream"
    assert requests[0].body == b"\xff\xd8 jpeg"
    assert len({r.client_port for r in requests}) == 1
    assert len(seconds) == 5


def test_unavailable_answers_are_retried_until_the_prediction_comes(
    torchserve: FakeTorchServe, client_for: ClientFor
) -> None:
    torchserve.script = [Reply(503, b"overloaded"), Reply(404, b"model loading"), Reply(503)]
    assert client_for(torchserve.server.url).predict(b"jpeg") == PREDICTION
    assert len(torchserve.predictions) == 4


def test_unavailable_after_the_retries(torchserve: FakeTorchServe, client_for: ClientFor) -> None:
    torchserve.script = [Reply(503, b"overloaded")] * 10
    with pytest.raises(InferenceUnavailableError, match="after 3 attempts: HTTP 503"):
        client_for(torchserve.server.url, retries=2).predict(b"jpeg")
    assert len(torchserve.predictions) == 3


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (per_item_error("truncated"), "truncated"),
        (per_item_error("undecodable"), "undecodable"),
        (Reply(413, b"request entity too large"), "too_large"),
    ],
)
def test_a_bad_image_is_reported_once_and_never_retried(
    torchserve: FakeTorchServe, client_for: ClientFor, reply: Reply, code: str
) -> None:
    torchserve.script = [reply]
    with pytest.raises(BadImageError) as caught:
        client_for(torchserve.server.url).predict(b"\xff\xd8 cut short")
    assert caught.value.code == code
    assert caught.value.reason == f"image_{code}"
    assert len(torchserve.predictions) == 1


def test_predict_many_keeps_the_order_and_returns_bad_images_as_errors(
    torchserve: FakeTorchServe, client_for: ClientFor
) -> None:
    torchserve.script = [per_item_error("undecodable")]
    client = client_for(torchserve.server.url, concurrency=1)  # one thread: the script's order
    results = client.predict_many([b"bad", b"good-1", b"good-2"])
    assert isinstance(results[0], BadImageError)
    assert results[1:] == [PREDICTION, PREDICTION]


def test_the_model_version_is_learned_from_an_empty_request(
    torchserve: FakeTorchServe, client_for: ClientFor
) -> None:
    assert client_for(torchserve.server.url).model_version() == MODEL_VERSION
    assert torchserve.predictions[0].body == b""
    assert client_for(f"http://127.0.0.1:{closed_port()}", retries=0).model_version() is None


@pytest.mark.parametrize(
    "refusal",
    [INVALID_KEY, Reply(401, b"unauthorized"), Reply(403, b"forbidden")],
    ids=["torchserve-400", "401", "403"],
)
def test_a_rotated_key_is_read_again_from_the_key_file(
    torchserve: FakeTorchServe, client_for: ClientFor, key_file: Path, refusal: Reply
) -> None:
    torchserve.refusal = refusal
    client = client_for(torchserve.server.url)
    assert client.predict(b"jpeg") == PREDICTION
    torchserve.key = "key-2"  # TorchServe rotated its key and rewrote the file
    write_keys(key_file, "key-2")
    assert client.predict(b"jpeg") == PREDICTION
    keys = [r.headers["Authorization"] for r in torchserve.predictions]
    assert keys == ["Bearer key-1", "Bearer key-1", "Bearer key-2"]


def test_a_refused_key_that_does_not_change_pauses_rather_than_blames_the_image(
    torchserve: FakeTorchServe, client_for: ClientFor
) -> None:
    client = client_for(torchserve.server.url)
    torchserve.key = "key-from-elsewhere"
    with pytest.raises(InferenceUnavailableError, match="refused the inference secret"):
        client.predict(b"jpeg")
    assert len(torchserve.predictions) == 1


def test_a_refused_connection_is_unavailable_quickly(client_for: ClientFor) -> None:
    client = client_for(f"http://127.0.0.1:{closed_port()}", retries=3, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(InferenceUnavailableError, match="after 4 attempts: ConnectionRefused"):
        client.predict(b"jpeg")
    assert time.monotonic() - started < 1.0


def test_healthy_pings_and_reads_a_new_key(
    torchserve: FakeTorchServe, client_for: ClientFor, key_file: Path
) -> None:
    client = client_for(torchserve.server.url)
    assert client.healthy()
    torchserve.key = "key-after-restart"
    assert not client.healthy()  # refused, and the key file has not changed yet
    write_keys(key_file, "key-after-restart")
    assert client.healthy()
    assert not client_for(f"http://127.0.0.1:{closed_port()}").healthy()


def test_token_source_and_client_refuse_what_cannot_work(tmp_path: Path) -> None:
    assert TokenSource(token="direct").get() == "direct"
    with pytest.raises(InvalidSettingsError, match="token or a key file"):
        TokenSource()
    with pytest.raises(InvalidSettingsError, match="cannot read the inference key"):
        TokenSource(key_file=tmp_path / "missing.json")
    half_written = tmp_path / "half.json"
    half_written.write_text('{"inference": ')
    with pytest.raises(InvalidSettingsError, match="cannot read the inference key"):
        TokenSource(key_file=half_written)
    with pytest.raises(InvalidSettingsError, match="http"):
        TorchServeClient("localhost:8080", MODEL, TokenSource(token="t"))
    with pytest.raises(InvalidSettingsError, match="concurrency"):
        TorchServeClient("http://localhost:8080", MODEL, TokenSource(token="t"), concurrency=0)
