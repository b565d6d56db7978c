"""The Open Inference Protocol client against a fake server on 127.0.0.1: binary BYTES batches
encoded as tritonclient encodes them, per-image errors, the secret header, unavailability,
and a failing request split to find its bad image."""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from geoverdict_service.exceptions import BadImageError, InferenceUnavailableError
from geoverdict_service.model_servers.open_inference import (
    HEADER_LENGTH,
    OpenInferenceClient,
    decode_bytes,
    encode_bytes,
    infer_request,
    output_elements,
)
from geoverdict_service.model_servers.tokens import TokenSource
from tests.service.localhttp import LocalServer, Reply, Seen, closed_port
from tests.service.samples import MODEL_VERSION, confident_paris

MODEL = "geoverdict"
SECRET = "s3cret"
PREDICTION = confident_paris()


def answer_for(image: bytes) -> dict[str, Any]:
    """What the fake model replies to one image."""
    if not image:
        return {"model_version": MODEL_VERSION, "error": {"code": "empty", "message": "empty"}}
    if image.startswith(b"bad"):
        return {
            "model_version": MODEL_VERSION,
            "error": {"code": "undecodable", "message": "undecodable: not an image"},
        }
    return PREDICTION


class FakeTriton:
    """Checks the secret header, parses the binary request, answers each image; `script`
    answers come first; `poison` images make their whole request fail (HTTP 500)."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.poison = b"poison"
        self.batches: list[int] = []
        self.server = LocalServer(self.respond)

    def respond(self, request: Seen) -> Reply:
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return Reply(403, b'{"error":"This API is restricted"}')
        if request.path in ("/v2/health/ready", f"/v2/models/{MODEL}/ready"):
            return Reply(200, b"")
        if request.path != f"/v2/models/{MODEL}/infer":
            return Reply(400, b'{"error":"Request for unknown model"}')
        if self.script:
            return self.script.pop(0)
        length = int(request.headers[HEADER_LENGTH])
        header = json.loads(request.body[:length])
        (tensor,) = header["inputs"]
        images = decode_bytes(request.body[length:])
        assert tensor["shape"] == [len(images), 1] and tensor["datatype"] == "BYTES"
        self.batches.append(len(images))
        if any(image.startswith(self.poison) for image in images):
            return Reply(500, b'{"error":"model raised"}')
        data = encode_bytes([json.dumps(answer_for(i)).encode() for i in images])
        out = json.dumps(
            {
                "model_name": MODEL,
                "model_version": "1",
                "outputs": [
                    {
                        "name": "REPLY",
                        "datatype": "BYTES",
                        "shape": [len(images), 1],
                        "parameters": {"binary_data_size": len(data)},
                    }
                ],
            }
        ).encode()
        return Reply(200, out + data, {HEADER_LENGTH: str(len(out))})


@pytest.fixture
def triton() -> Iterator[FakeTriton]:
    fake = FakeTriton()
    with fake.server:
        yield fake


ClientFor = Callable[..., OpenInferenceClient]


@pytest.fixture
def client_for() -> Iterator[ClientFor]:
    made: list[OpenInferenceClient] = []

    def make(url: str, secret: str = SECRET, **options: Any) -> OpenInferenceClient:
        settings: dict[str, Any] = {
            "retries": 2,
            "backoff_s": 0.01,
            "timeout_s": 5.0,
            "auth_header": "authorization",
            **options,
        }
        client = OpenInferenceClient(url, MODEL, TokenSource(token=secret), **settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_the_encoding_is_the_one_tritons_python_backend_reads() -> None:
    # Triton's own (de)serializer, from the pinned wheel the local stack runs.
    from geoverdict_stack import prerequisites
    from geoverdict_stack.exceptions import PrerequisiteError

    try:  # triton(fetch=False) raises when the wheel is not installed: a skip, not an error
        backends = prerequisites.triton(fetch=False).backends
    except PrerequisiteError as exc:
        pytest.skip(f"Triton is not installed (geoverdict stack fetch): {exc}")
    utils = backends / "python" / "triton_python_backend_utils.py"
    if not utils.is_file():
        pytest.skip("Triton is not installed (geoverdict stack fetch)")
    spec = importlib.util.spec_from_file_location("triton_python_backend_utils", utils)
    assert spec is not None and spec.loader is not None
    pb_utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb_utils)
    elements = [b"", b"a", b"\x00\xff" * 300, "é".encode()]
    ours = encode_bytes(elements)
    assert pb_utils.serialize_byte_tensor(np.array(elements, dtype=np.object_)) == ours
    assert list(pb_utils.deserialize_bytes_tensor(ours)) == elements == decode_bytes(ours)


def test_a_request_is_its_json_header_then_the_images() -> None:
    body, headers = infer_request([b"jpeg-1", b"jpeg-22"])
    length = int(headers[HEADER_LENGTH])
    header = json.loads(body[:length])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(body) - length
    assert decode_bytes(body[length:]) == [b"jpeg-1", b"jpeg-22"]
    assert struct.unpack("<I", body[length : length + 4]) == (6,)


def test_a_malformed_answer_is_the_servers_fault_not_the_images() -> None:
    with pytest.raises(InferenceUnavailableError, match="malformed"):
        output_elements({HEADER_LENGTH: "2"}, b"{}", 1)
    header = json.dumps({"outputs": [{"name": "REPLY", "parameters": {"binary_data_size": 9}}]})
    with pytest.raises(InferenceUnavailableError, match="runs past"):
        output_elements({HEADER_LENGTH: str(len(header))}, header.encode() + b"\x05\0\0\0ab", 1)


def test_images_go_in_batches_and_each_gets_its_own_answer(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    seconds: list[float] = []
    client = client_for(triton.server.url, batch_size=4, observe=seconds.append)
    images = [b"jpeg-%d" % k for k in range(9)] + [b"bad one"]
    results = client.predict_many(images)
    assert sorted(triton.batches) == [2, 4, 4]  # requests run concurrently
    assert results[:9] == [PREDICTION] * 9
    assert isinstance(results[9], BadImageError) and results[9].code == "undecodable"
    assert results[9].model_version == MODEL_VERSION
    assert len(seconds) == 3  # one observation per request


def test_a_request_holds_at_most_max_request_bytes(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    client = client_for(triton.server.url, batch_size=8, max_request_bytes=25)
    client.predict_many([b"x" * 10, b"x" * 10, b"x" * 10, b"x" * 40, b"x" * 5])
    assert sorted(triton.batches) == [1, 1, 1, 2]


def test_the_model_version_comes_from_an_empty_image(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    assert client_for(triton.server.url).model_version() == MODEL_VERSION


def test_a_model_not_loaded_yet_is_retried_then_answers(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    unknown = Reply(400, b'{"error":"Request for unknown model: \'geoverdict\' is not found"}')
    triton.script = [unknown, Reply(503, b"")]
    assert client_for(triton.server.url).predict_many([b"jpeg"]) == [PREDICTION]


def test_unavailable_after_the_retries_pauses_rather_than_blames_the_images(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    triton.script = [Reply(503, b"")] * 3
    futures = client_for(triton.server.url, retries=2).submit_many([b"a", b"b"])
    for future in futures:
        with pytest.raises(InferenceUnavailableError, match="after 3 attempts"):
            future.result()
    with pytest.raises(InferenceUnavailableError, match="Connection"):
        client_for(f"http://127.0.0.1:{closed_port()}", retries=0).submit_many([b"a"])[0].result()


def test_a_refused_secret_is_unavailability_named_as_such(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    client = client_for(triton.server.url, secret="wrong")
    with pytest.raises(InferenceUnavailableError, match="refused the inference secret"):
        client.submit_many([b"jpeg"])[0].result()
    assert not client.healthy()
    assert client_for(triton.server.url).healthy()


def test_a_dead_stub_is_the_servers_unavailability_not_the_images_fault(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    dead = Reply(500, b'{"error":"Stub process \'demo_0_0\' is not healthy."}')
    triton.script = [dead] * 3
    (future,) = client_for(triton.server.url, retries=2).submit_many([b"jpeg"])
    with pytest.raises(InferenceUnavailableError, match="not healthy"):
        future.result()
    assert triton.batches == []  # never split to blame the image


def test_a_request_that_keeps_failing_is_split_to_blame_only_its_bad_image(
    triton: FakeTriton, client_for: ClientFor
) -> None:
    client = client_for(triton.server.url, batch_size=4, retries=1)
    results = client.predict_many([b"jpeg-1", b"poison", b"jpeg-3"])
    assert results[0] == results[2] == PREDICTION
    assert isinstance(results[1], BadImageError) and results[1].code == "inference_failed"
    # the batch twice (a retry), then each image alone, the poison one twice
    assert triton.batches == [3, 3, 1, 1, 1, 1]
