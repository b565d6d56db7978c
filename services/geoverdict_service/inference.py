"""The TorchServe inference client: keep-alive HTTP from a thread pool, bearer token, retries.

Two kinds of failure are kept apart. "This image is bad" (the handler's per-item error, or HTTP
413) raises BadImageError and is never retried. "The server is unavailable" (connection errors,
timeouts, 5xx, 404 while the model loads) is retried with backoff, then raises
InferenceUnavailableError, which the consumer answers by pausing, not by dead-lettering.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from geoverdict_service.backoff import delay
from geoverdict_service.exceptions import BadImageError, ConfigError, InferenceUnavailableError

log = logging.getLogger(__name__)

Reply = dict[str, Any]  # one handler reply: contract.checked_prediction makes it a Prediction

RETRYABLE_STATUS = frozenset({404, 408, 429, 502, 503, 504, 507})
# 500: the handler raised for this request. Retried like the above, but if it persists the
# image is the likely cause, so it becomes this item's error rather than a pause of the stream.
HANDLER_FAILED = 500


def _token_refused(status: int, body: bytes) -> bool:
    """TorchServe answers a wrong or expired key with 400 InvalidKeyException; proxies, 401/403."""
    return status in (401, 403) or (status == 400 and b"InvalidKeyException" in body)


class TokenSource:
    """The inference key: given directly, or read from TorchServe's key_file.json."""

    def __init__(self, token: str | None = None, key_file: Path | None = None) -> None:
        if token is None and key_file is None:
            raise ConfigError("TorchServe needs a token or a key file (token authorization is on)")
        self._token = token
        self._key_file = key_file
        self._lock = threading.Lock()
        if token is None:
            self.refresh()

    def get(self) -> str:
        """The current token."""
        if self._token is None:
            raise ConfigError("no TorchServe inference token")
        return self._token

    def refresh(self) -> bool:
        """Re-read the key file (keys rotate); True when the token changed."""
        if self._key_file is None:
            return False
        try:
            data = json.loads(self._key_file.read_text())
            token = str(data["inference"]["key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot read the inference key from {self._key_file}: {exc}"
            ) from exc
        with self._lock:
            changed = token != self._token
            self._token = token
        return changed


class InferenceClient:
    """Sends images to `POST /predictions/<model>`; thread-safe, one connection per thread."""

    def __init__(
        self,
        base_url: str,
        model: str,
        tokens: TokenSource,
        *,
        concurrency: int = 8,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"TorchServe URL must be http(s)://host:port, got {base_url!r}")
        if concurrency < 1:
            raise ConfigError(f"inference concurrency must be >= 1, got {concurrency}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self.model = model
        self.tokens = tokens
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.observe = observe  # called with each request's seconds (metrics)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="inference")
        self.concurrency = concurrency

    # -- public API ------------------------------------------------------------------------
    def submit(self, image: bytes) -> Future[Reply]:
        """Predict in the background; the future raises BadImageError or unavailability."""
        return self._pool.submit(self.predict, image)

    def predict_many(self, images: Sequence[bytes]) -> list[Reply | BadImageError]:
        """Predict all images concurrently; bad images come back as their error, in order."""
        futures = [self.submit(image) for image in images]
        results: list[Reply | BadImageError] = []
        for future in futures:
            try:
                results.append(future.result())
            except BadImageError as exc:
                results.append(exc)
        return results

    def predict(self, image: bytes) -> Reply:
        """One image's prediction, retrying while the server is unavailable."""
        started = time.perf_counter()
        try:
            return self._predict(image)
        finally:
            if self.observe is not None:
                self.observe(time.perf_counter() - started)

    def model_version(self) -> str | None:
        """The served model's version, asked with an empty request (the handler's `empty`
        error carries it); None when the server is unavailable."""
        try:
            self._predict(b"")
        except BadImageError as exc:
            return exc.model_version
        except InferenceUnavailableError:
            return None
        return None

    def _predict(self, image: bytes) -> Reply:
        path = f"/predictions/{self.model}"
        last_problem = "no attempt"
        refreshed = False
        attempt = 0
        while True:
            try:
                status, body = self._request("POST", path, image)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                last_problem = f"{type(exc).__name__}: {exc}"
            else:
                if status == 200:
                    return self._parse(body)
                if status == 413:
                    raise BadImageError("image larger than the model server accepts", "too_large")
                if _token_refused(status, body):
                    if not refreshed and self._refresh_token():
                        refreshed = True
                        continue
                    raise InferenceUnavailableError(
                        f"TorchServe refused the inference token (HTTP {status}); "
                        "check the key file or GEOVERDICT_TORCHSERVE_TOKEN"
                    )
                if status == HANDLER_FAILED and attempt >= self.retries:
                    raise BadImageError(
                        f"the model failed on this image {attempt + 1} times: {body[:200]!r}",
                        "inference_failed",
                    )
                if status not in RETRYABLE_STATUS and status != HANDLER_FAILED:
                    raise BadImageError(
                        f"model server answered HTTP {status}: {body[:200]!r}", "inference_failed"
                    )
                last_problem = f"HTTP {status}: {body[:200]!r}"
            if attempt >= self.retries:
                raise InferenceUnavailableError(
                    f"TorchServe unavailable after {attempt + 1} attempts: {last_problem}"
                )
            time.sleep(delay(attempt, self.backoff_s, self.max_backoff_s, jitter=True))
            attempt += 1

    def healthy(self) -> bool:
        """True when /ping answers Healthy (re-reading the key file once if refused)."""
        for _ in range(2):
            try:
                status, body = self._request("GET", "/ping", None, timeout=3.0)
            except (OSError, http.client.HTTPException):
                self._drop_connection()
                return False
            if status == 200:
                try:
                    return bool(json.loads(body).get("status") == "Healthy")
                except ValueError:
                    return False
            # A restarted server has new keys: TorchServe answers 400/401 to the old token.
            if status not in (400, 401, 403) or not self._refresh_token():
                return False
        return False

    def _refresh_token(self) -> bool:
        try:
            return self.tokens.refresh()
        except ConfigError:
            return False  # the key file is being rewritten; try again later

    def close(self) -> None:
        """Stop the worker threads (in-flight requests finish first)."""
        self._pool.shutdown(wait=True)

    # -- internals -------------------------------------------------------------------------
    def _parse(self, body: bytes) -> Reply:
        try:
            reply = json.loads(body)
        except ValueError as exc:
            raise InferenceUnavailableError(f"model server sent invalid JSON: {exc}") from exc
        if not isinstance(reply, dict):
            raise InferenceUnavailableError(
                f"model server sent {type(reply).__name__}, not an object"
            )
        error = reply.get("error")
        if error:
            version = reply.get("model_version")
            raise BadImageError(
                str(error.get("message", error)),
                str(error.get("code", "bad_image")),
                model_version=str(version) if version is not None else None,
            )
        return reply

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self._host, self._port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _request(
        self, method: str, path: str, body: bytes | None, timeout: float | None = None
    ) -> tuple[int, bytes]:
        conn = self._connection(timeout or self.timeout_s)
        headers = {"Authorization": f"Bearer {self.tokens.get()}", "Connection": "keep-alive"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self._drop_connection()
        return resp.status, data
