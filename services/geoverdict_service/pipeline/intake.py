"""Records in: each parsed as an event, its image at hand (inline, or fetched on a pool with a
deadline) and hashed, every step under the poison-pill guard."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from geoverdict_service.events import parse_event
from geoverdict_service.exceptions import FetchError
from geoverdict_service.fetch import FetchPolicy
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.items import Item, guard

# Fetches wait on image hosts, not on the CPU: 8 at once overlap a poll's URLs (one slow host
# does not hold up the others) without opening hundreds of connections when a burst of
# max_poll_records events are all URLs.
FETCH_THREADS = 8


def fetch_wait_s(policy: FetchPolicy) -> float:
    """A fetch with every retry and its backoff takes at most this long; then it is late."""
    return (policy.retries + 1) * policy.timeout_s + (policy.backoff_s * 2**policy.retries + 1.0)


class Intake:
    """Turns a poll's records into items with their image and its SHA-256, or their failure."""

    def __init__(self, fetch: Callable[[str], bytes], wait_s: float, metrics: Metrics) -> None:
        self._fetch = fetch
        self._wait_s = wait_s
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch")

    def read(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> list[Item]:
        """One item per record, in the poll's order; images by URL are fetched in parallel."""
        items = [Item(tp, record) for tp, records in batch.items() for record in records]
        self._metrics.events.inc(len(items))
        self._metrics.batch_size.observe(len(items))
        fetches: list[tuple[Item, Future[bytes], float]] = []
        for item in items:
            guard(item, "parse", partial(self._parse, item, fetches))
        for item, future, t0 in fetches:
            guard(item, "fetch", partial(self._fetched, item, future))
            item.timings_ms["fetch"] = round((time.perf_counter() - t0) * 1000, 3)
        for item in items:
            if item.image is not None and item.failure is None:
                item.sha256 = hashlib.sha256(item.image).hexdigest()
        return items

    def close(self) -> None:
        """Drop the fetches not started yet (shutdown)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _parse(self, item: Item, fetches: list[tuple[Item, Future[bytes], float]]) -> None:
        event = item.event = parse_event(item.record.value)
        if event.image_bytes is not None:
            item.image = event.image_bytes
        elif event.image_url is not None:
            future = self._pool.submit(self._fetch, event.image_url)
            fetches.append((item, future, time.perf_counter()))

    def _fetched(self, item: Item, future: Future[bytes]) -> None:
        try:
            item.image = future.result(timeout=self._wait_s)
        except FutureTimeout as exc:
            future.cancel()
            raise FetchError(
                f"fetching took longer than {self._wait_s:.0f} s", "fetch_timeout"
            ) from exc
