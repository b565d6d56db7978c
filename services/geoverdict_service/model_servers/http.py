"""What both model-server clients share: keep-alive HTTP/1.1 from a thread pool (one connection
per thread), the secret in a header, retries with backoff, and the one split that matters.

"This image is bad" (the server's per-image error reply, or a request refused as too large)
raises BadImageError and is never retried. "The server is unavailable" (connection errors,
timeouts, the server's own retryable answers) is retried with backoff, then raises
InferenceUnavailableError, which the consumer answers by pausing, not by dead-lettering.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import orjson

from geoverdict_service.backoff import delay
from geoverdict_service.exceptions import (
    BadImageError,
    InferenceUnavailableError,
    InvalidSettingsError,
)
from geoverdict_service.model_servers.tokens import TokenSource

log = logging.getLogger(__name__)

Reply = dict[str, Any]  # one model reply: contract.checked_prediction makes it a Prediction


def parse_reply(body: bytes | str, server: str) -> Reply:
    """One image's reply (prediction.schema.json); its error reply raises BadImageError."""
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InferenceUnavailableError(f"{server} sent invalid JSON: {exc}") from exc
    if not isinstance(reply, dict):
        raise InferenceUnavailableError(f"{server} sent {type(reply).__name__}, not an object")
    error = reply.get("error")
    if error:
        version = reply.get("model_version")
        raise BadImageError(
            str(error.get("message", error)) if isinstance(error, dict) else str(error),
            str(error.get("code", "bad_image")) if isinstance(error, dict) else "bad_image",
            model_version=str(version) if version is not None else None,
        )
    return reply


class HttpModelServer:
    """The plumbing of a model-server client; subclasses say what a request is and what an
    answer means (`retryable`, `token_refused`, `predict_chunk`)."""

    name = "model server"  # for messages and logs
    secret_hint = "the key file or token setting"

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        auth_header: str = "Authorization",
        concurrency: int = 8,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidSettingsError(
                f"{self.name} URL must be http(s)://host:port, got {base_url!r}"
            )
        if concurrency < 1:
            raise InvalidSettingsError(f"inference concurrency must be >= 1, got {concurrency}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tokens = tokens
        self.auth_header = auth_header
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.observe = observe  # called with each request's seconds (metrics)
        self.concurrency = concurrency
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="inference")

    # -- the interface the consumer uses ---------------------------------------------------
    def submit_many(self, images: Sequence[bytes]) -> list[Future[Reply]]:
        """Predict in the background, one future per image, in order; a future raises
        BadImageError (this image) or InferenceUnavailableError (the server)."""
        futures: list[Future[Reply]] = [Future() for _ in images]
        for chunk in self.chunks(images):
            self._pool.submit(
                self._run_chunk, [images[k] for k in chunk], [futures[k] for k in chunk]
            )
        return futures

    def predict_many(self, images: Sequence[bytes]) -> list[Reply | BadImageError]:
        """Predict all images and wait; bad images come back as their error, in order."""
        results: list[Reply | BadImageError] = []
        for future in self.submit_many(images):
            try:
                results.append(future.result())
            except BadImageError as exc:
                results.append(exc)
        return results

    def model_version(self) -> str | None:
        """The served model's version, asked with an empty image (whose `empty` error reply
        carries it); None when the server is unavailable."""
        try:
            self.submit_many([b""])[0].result()
        except BadImageError as exc:
            return exc.model_version
        except InferenceUnavailableError:
            return None
        return None

    def healthy(self) -> bool:
        """True when the server says it and the model are ready."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the worker threads (in-flight requests finish first)."""
        self._pool.shutdown(wait=True)

    # -- what a subclass defines -----------------------------------------------------------
    def chunks(self, images: Sequence[bytes]) -> list[list[int]]:
        """The images' indices grouped into requests: one image a request by default."""
        return [[k] for k in range(len(images))]

    def predict_chunk(self, images: Sequence[bytes]) -> list[Reply | BadImageError]:
        """One request's images answered (retrying while the server is unavailable)."""
        raise NotImplementedError

    def retryable(self, status: int, body: bytes, attempt: int) -> bool:
        """Whether an answer means "try again" (the server is busy, starting, restarting)."""
        raise NotImplementedError

    def token_refused(self, status: int, body: bytes) -> bool:
        """Whether an answer means the secret was refused."""
        return status in (401, 403)

    # -- plumbing --------------------------------------------------------------------------
    def _run_chunk(self, images: Sequence[bytes], futures: Sequence[Future[Reply]]) -> None:
        started = time.perf_counter()
        try:
            results = self.predict_chunk(images)
        except BaseException as exc:  # unavailable, or a bug: every image of the request
            for future in futures:
                future.set_exception(exc)
            return
        finally:
            if self.observe is not None:
                self.observe(time.perf_counter() - started)
        for future, result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def exchange(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request with the retry rules: connection errors and retryable answers are
        tried again with backoff, a refused secret is re-read once; returns the first answer
        that is neither, or raises InferenceUnavailableError when the attempts run out."""
        problem = "no attempt"
        refreshed = False
        attempt = 0
        while True:
            try:
                status, answer_headers, data = self.request(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if self.token_refused(status, data):
                    if not refreshed and self._refresh_token():
                        refreshed = True
                        continue
                    raise InferenceUnavailableError(
                        f"{self.name} refused the inference secret (HTTP {status}); check "
                        f"{self.secret_hint}"
                    )
                if not self.retryable(status, data, attempt):
                    return status, answer_headers, data
                problem = f"HTTP {status}: {data[:200]!r}"
            if attempt >= self.retries:
                raise InferenceUnavailableError(
                    f"{self.name} unavailable after {attempt + 1} attempts: {problem}"
                )
            time.sleep(delay(attempt, self.backoff_s, self.max_backoff_s, jitter=True))
            attempt += 1

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One HTTP exchange on this thread's keep-alive connection, with the secret."""
        conn = self._connection(timeout or self.timeout_s)
        sent = {self.auth_header: f"Bearer {self.tokens.get()}", "Connection": "keep-alive"}
        sent.update(headers or {})
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self._drop_connection()
        return resp.status, resp.headers, data

    def probe(self, path: str) -> tuple[int, bytes] | None:
        """A short GET for health checks (the secret re-read once if refused); None when the
        server does not answer."""
        for _ in range(2):
            try:
                status, _, body = self.request("GET", path, None, timeout=3.0)
            except (OSError, http.client.HTTPException):
                self._drop_connection()
                return None
            # A restarted server may have new keys: it refuses the old one.
            if not self.token_refused(status, body) or not self._refresh_token():
                return status, body
        return None

    def _refresh_token(self) -> bool:
        try:
            return self.tokens.refresh()
        except InvalidSettingsError:
            return False  # the key file is being rewritten; try again later

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
