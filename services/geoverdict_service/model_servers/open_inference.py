"""A client of the Open Inference Protocol (KServe v2; Triton, KServe's ModelServer, OpenVINO
Model Server, MLServer): a batch of images per request as one binary BYTES tensor.

`POST /v2/models/<model>/infer` with the binary tensor extension: a JSON header (its length in
`Inference-Header-Content-Length`) naming input `IMAGE`, shape [N, 1], datatype BYTES, and
`binary_data_size`, then the data, each element a 4-byte little-endian length and the image's
bytes (tritonclient's serialize_byte_tensor encoding). The answer's output `REPLY` holds one
JSON reply per image in the same encoding: the prediction contract, or that image's error
reply (undecodable, too large: the image's fault, never retried). A request the server cannot
answer at all (connection refused, 5xx, the model not loaded) is retried, then the server is
unavailable and the consumer pauses. A request that keeps failing is split to find the image
that makes it fail, so one bad image never costs its neighbours their verdicts.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from email.message import Message
from typing import Any

from geoverdict_service.exceptions import BadImageError, InferenceUnavailableError
from geoverdict_service.model_servers.http import HttpModelServer, Reply, parse_reply
from geoverdict_service.model_servers.tokens import TokenSource

INPUT = "IMAGE"
OUTPUT = "REPLY"
HEADER_LENGTH = "Inference-Header-Content-Length"
RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
# Triton answers 400 for a model that is not loaded (yet, or any more): the server is there,
# the model is not, which is unavailability (a load, a version swap), not a bad image; and
# 500 "Stub process ... is not healthy" for every request once a Python stub died (it is not
# restarted, and readiness still says ready: seen with Triton 2.51).
NOT_SERVED = (b"unknown model", b"is not ready", b"not found", b"unavailable", b"not healthy")
FAILED = 500  # the model raised for the request: retried, then the request is split


def encode_bytes(elements: Sequence[bytes]) -> bytes:
    """A BYTES tensor's binary data: each element as a 4-byte little-endian length, then it."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def decode_bytes(data: bytes | memoryview) -> list[bytes]:
    """The elements of a BYTES tensor's binary data; ValueError when it is not one."""
    view = memoryview(data)
    out: list[bytes] = []
    at = 0
    while at < len(view):
        if at + 4 > len(view):
            raise ValueError(f"a BYTES element's length is cut at byte {at}")
        (size,) = struct.unpack_from("<I", view, at)
        at += 4
        if at + size > len(view):
            raise ValueError(f"a BYTES element of {size} bytes runs past the data")
        out.append(bytes(view[at : at + size]))
        at += size
    return out


def infer_request(images: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one inference request for `images`."""
    data = encode_bytes(images)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": INPUT,
                    "shape": [len(images), 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": OUTPUT, "parameters": {"binary_data": True}}],
        },
        separators=(",", ":"),
    ).encode()
    headers = {
        HEADER_LENGTH: str(len(header)),
        "Content-Type": "application/octet-stream",
    }
    return header + data, headers


def output_elements(
    headers: Mapping[str, str] | Message, body: bytes, expected: int
) -> list[bytes]:
    """The REPLY elements of an inference response (binary, or JSON data as a fallback)."""
    try:
        length = int(headers.get(HEADER_LENGTH) or len(body))
        header = json.loads(body[:length])
        offset = length
        for output in header["outputs"]:
            size = int((output.get("parameters") or {}).get("binary_data_size", 0))
            if output["name"] == OUTPUT:
                if size:
                    elements = decode_bytes(memoryview(body)[offset : offset + size])
                else:  # JSON data: the strings themselves
                    elements = [str(e).encode() for e in output["data"]]
                break
            offset += size
        else:
            raise ValueError(f"no output {OUTPUT!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise InferenceUnavailableError(f"the model server's answer is malformed: {exc}") from exc
    if len(elements) != expected:
        raise InferenceUnavailableError(
            f"the model server answered {len(elements)} replies for {expected} images"
        )
    return elements


class OpenInferenceClient(HttpModelServer):
    """Batches of images to `POST /v2/models/<model>/infer`; thread-safe."""

    name = "the model server (Open Inference Protocol)"
    secret_hint = "GEOVERDICT_TRITON_KEY_FILE or GEOVERDICT_TRITON_TOKEN"

    def __init__(
        self,
        base_url: str,
        model: str,
        tokens: TokenSource,
        *,
        batch_size: int = 8,
        max_request_bytes: int = 32 * 1024 * 1024,
        **options: Any,
    ) -> None:
        super().__init__(base_url, tokens, **options)
        self.model = model
        self.batch_size = batch_size
        self.max_request_bytes = max_request_bytes

    def chunks(self, images: Sequence[bytes]) -> list[list[int]]:
        """Up to batch_size images a request, and at most max_request_bytes of them (an image
        larger than that goes alone: the server's own limit then speaks for it)."""
        chunks: list[list[int]] = []
        size = 0
        for k, image in enumerate(images):
            if (
                chunks
                and len(chunks[-1]) < self.batch_size
                and size + len(image) <= (self.max_request_bytes)
            ):
                chunks[-1].append(k)
                size += len(image)
            else:
                chunks.append([k])
                size = len(image)
        return chunks

    def predict_chunk(self, images: Sequence[bytes]) -> list[Reply | BadImageError]:
        body, headers = infer_request(images)
        status, answer_headers, data = self.exchange(
            "POST", f"/v2/models/{self.model}/infer", body, headers
        )
        if status == 200:
            results: list[Reply | BadImageError] = []
            for element in output_elements(answer_headers, data, len(images)):
                try:
                    results.append(parse_reply(element, self.name))
                except BadImageError as exc:
                    results.append(exc)
            return results
        if len(images) > 1:  # which image makes the request fail? each alone says
            return [r for image in images for r in self.predict_chunk([image])]
        code = "too_large" if status == 413 else "inference_failed"
        return [BadImageError(f"model server answered HTTP {status}: {data[:200]!r}", code)]

    def retryable(self, status: int, body: bytes, attempt: int) -> bool:
        if status in RETRYABLE_STATUS:
            return True
        if status in (400, 404, 500) and any(text in body.lower() for text in NOT_SERVED):
            return True
        return status == FAILED and attempt < self.retries

    def healthy(self) -> bool:
        """True when the model is ready (/v2/models/<model>/ready). Not /v2/health/ready: with
        strict readiness it says 400 during every version swap, and for good after any failed
        load of another version, while the model serves (seen with Triton 2.51)."""
        answer = self.probe(f"/v2/models/{self.model}/ready")
        return answer is not None and answer[0] == 200
