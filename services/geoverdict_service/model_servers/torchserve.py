"""The TorchServe client: `POST /predictions/<model>`, one image a request (TorchServe's frontend
batches them for the handler), the bearer inference key."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from geoverdict_service.exceptions import BadImageError
from geoverdict_service.model_servers.http import HttpModelServer, Reply, parse_reply
from geoverdict_service.model_servers.tokens import TokenSource

RETRYABLE_STATUS = frozenset({404, 408, 429, 502, 503, 504, 507})
# 500: the handler raised for this request. Retried like the above, but if it persists the
# image is the likely cause, so it becomes this item's error rather than a pause of the stream.
HANDLER_FAILED = 500


class TorchServeClient(HttpModelServer):
    """Sends images to `POST /predictions/<model>`; thread-safe, one connection per thread."""

    name = "TorchServe"
    secret_hint = "the key file or GEOVERDICT_TORCHSERVE_TOKEN"

    def __init__(self, base_url: str, model: str, tokens: TokenSource, **options: Any) -> None:
        super().__init__(base_url, tokens, **options)
        self.model = model

    def predict(self, image: bytes) -> Reply:
        """One image's prediction, retrying while the server is unavailable."""
        status, _, body = self.exchange(
            "POST",
            f"/predictions/{self.model}",
            image,
            {"Content-Type": "application/octet-stream"},
        )
        if status == 200:
            return parse_reply(body, self.name)
        if status == 413:
            raise BadImageError("image larger than the model server accepts", "too_large")
        if status == HANDLER_FAILED:
            raise BadImageError(
                f"the model failed on this image {self.retries + 1} times: {body[:200]!r}",
                "inference_failed",
            )
        raise BadImageError(
            f"model server answered HTTP {status}: {body[:200]!r}", "inference_failed"
        )

    def predict_chunk(self, images: Sequence[bytes]) -> list[Reply | BadImageError]:
        results: list[Reply | BadImageError] = []
        for image in images:
            try:
                results.append(self.predict(image))
            except BadImageError as exc:
                results.append(exc)
        return results

    def retryable(self, status: int, body: bytes, attempt: int) -> bool:
        return status in RETRYABLE_STATUS or (status == HANDLER_FAILED and attempt < self.retries)

    def token_refused(self, status: int, body: bytes) -> bool:
        """TorchServe answers a wrong or expired key with 400 InvalidKeyException; proxies
        with 401/403."""
        return status in (401, 403) or (status == 400 and b"InvalidKeyException" in body)

    def healthy(self) -> bool:
        """True when /ping answers Healthy (re-reading the key file once if refused)."""
        answer = self.probe("/ping")
        if answer is None or answer[0] != 200:
            return False
        try:
            return bool(json.loads(answer[1]).get("status") == "Healthy")
        except ValueError:
            return False
