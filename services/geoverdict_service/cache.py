"""The verdict cache in Redis: model predictions keyed by model version and image hash.

It fails open. When Redis is down every lookup is a miss and every store is skipped, counted in
the metrics, and Redis is not asked again for `retry_after_s` so a dead cache costs no timeouts.
Only predictions are cached (never image bytes), each with a TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import orjson
import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "geoverdict:prediction"

Value = TypeVar("Value")


def cache_key(model_version: str, image_sha256: str) -> str:
    """Redis key of one image's prediction under one model version."""
    return f"{KEY_PREFIX}:{model_version}:{image_sha256}"


class PredictionCache:
    """get_many / set_many over one pipelined round trip each; errors are counted, not raised."""

    def __init__(
        self,
        url: str | None,
        ttl_s: int,
        timeout_s: float = 0.5,
        retry_after_s: float = 5.0,
        on_error: Any = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.retry_after_s = retry_after_s
        self._on_error = on_error  # called with the operation name on every Redis failure
        self._down_until = 0.0
        self._client = (
            redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            if url
            else None
        )

    @property
    def enabled(self) -> bool:
        """False when no Redis URL was configured."""
        return self._client is not None

    def available(self) -> bool:
        """True when Redis answers PING now."""
        if self._client is None:
            return False
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The cached predictions for `keys` (None for a miss or when Redis is unavailable)."""
        client = self._usable()
        if not keys or client is None:
            return [None] * len(keys)
        try:
            raw = client.mget(keys)
        except redis.RedisError as exc:
            self._failed("get", exc)
            return [None] * len(keys)
        out: list[dict[str, Any] | None] = []
        for value in raw:
            try:
                out.append(orjson.loads(value) if value is not None else None)
            except orjson.JSONDecodeError:
                out.append(None)  # a corrupt entry is a miss; the next set overwrites it
        return out

    def set_many(self, items: Mapping[str, dict[str, Any]]) -> None:
        """Store predictions with the TTL; silently skipped when Redis is unavailable."""
        client = self._usable()
        if not items or client is None:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for key, prediction in items.items():
                pipe.set(key, orjson.dumps(prediction), ex=self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            self._failed("set", exc)

    def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            self._client.close()

    def _usable(self) -> redis.Redis | None:
        """The client, unless none is configured or Redis failed moments ago."""
        if time.monotonic() < self._down_until:
            return None
        return self._client

    def _failed(self, operation: str, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning(
                "Redis %s failed (%s); going on without the cache for %.0f s",
                operation,
                exc,
                self.retry_after_s,
            )
        self._down_until = time.monotonic() + self.retry_after_s
        if self._on_error is not None:
            self._on_error(operation)


class RecentPredictions(Generic[Value]):
    """A small in-process LRU in front of Redis for predictions already checked against the
    contract: a popular image is answered without a Redis round trip, a JSON decode and a
    schema check (a calibrated reply lists most cells: checking one costs about 0.4 ms)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Value | None:
        """The entry, now the most recent; None when absent."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: Value) -> None:
        """Keep `value`, forgetting the least recent entry beyond the size."""
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
