"""Publish image events: photos (files, folders or URLs) with their GPS EXIF as the claim, or
events already built (the demo's, the benchmarks'), as a burst or at a pace."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from tqdm import tqdm

from geoverdict_common.exif import gps_position
from geoverdict_service.events import make_event
from geoverdict_service.exceptions import BadEventError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
# Kafka's default message limit is 1 MiB; base64 grows the bytes by a third.
MAX_INLINE_BYTES = 700 * 1024
ACK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Published:
    """What was sent: event ids by source path or URL, what was skipped and why, and each
    event's time by id (where its end-to-end latency starts)."""

    event_ids: dict[str, str]
    skipped: dict[str, str]
    sent_at: dict[str, float]


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def expand_sources(sources: Iterable[str]) -> Iterator[str]:
    """Folders become their image files (sorted); files and URLs pass through."""
    for source in sources:
        path = Path(source)
        if _is_url(source) or not path.is_dir():
            yield source
            continue
        for child in sorted(path.rglob("*")):
            if child.suffix.lower() in IMAGE_SUFFIXES and child.is_file():
                yield str(child)


def event_for(
    source: str, claim: tuple[float, float] | None = None, use_exif: bool = True
) -> dict[str, Any]:
    """The image event for one file or URL; the file's GPS EXIF is the claim unless given."""
    if _is_url(source):
        return make_event(_post_id(source), image_url=source, claim=claim)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadEventError(f"cannot read {path}: {exc}", "unreadable") from exc
    if len(data) > MAX_INLINE_BYTES:
        raise BadEventError(
            f"{path} is {len(data)} bytes; inline images must be <= {MAX_INLINE_BYTES} "
            "(Kafka's 1 MiB message limit): publish it by URL instead",
            "too_large",
        )
    if claim is None and use_exif:
        try:
            claim = gps_position(data)
        except ValueError:
            claim = None  # not an image: the service will dead-letter it with its reason
    return make_event(_post_id(source), image_bytes=data, claim=claim)


def _post_id(source: str) -> str:
    return source.rsplit("/", 1)[-1] or source if _is_url(source) else Path(source).stem


def publish(
    producer: KafkaProducer,
    topic: str,
    sources: Iterable[str],
    claim: tuple[float, float] | None = None,
    use_exif: bool = True,
    progress: bool = True,
    rate: float | None = None,
) -> Published:
    """Send one event per source (`rate` events/s when given); waits until Kafka acknowledged
    all of them."""
    expanded = list(expand_sources(sources))
    ids: dict[str, str] = {}
    skipped: dict[str, str] = {}

    def events() -> Iterator[dict[str, Any]]:
        for source in tqdm(expanded, desc="publishing", unit="photo", disable=not progress):
            try:
                event = event_for(source, claim, use_exif)
            except BadEventError as exc:
                skipped[source] = str(exc)
                continue
            ids[source] = event["id"]
            yield event

    sent_at = send_events(producer, topic, events(), rate=rate)
    return Published(ids, skipped, sent_at)


def send_events(
    producer: KafkaProducer,
    topic: str,
    events: Iterable[dict[str, Any]],
    rate: float | None = None,
) -> dict[str, float]:
    """Send each event keyed by its id, `rate` events/s when given (else as fast as the
    producer takes them), and wait until Kafka acknowledged every one. Returns each event's
    time by id. `events` is read one at a time as it is sent: an event built by a generator
    carries the time it was sent, not the time a paced run began."""
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 events/s, got {rate}")
    sent_at: dict[str, float] = {}
    futures = []
    for event in events if rate is None else _paced(events, rate):
        value = json.dumps(event, separators=(",", ":")).encode()
        futures.append(producer.send(topic, key=event["id"].encode(), value=value))
        sent_at[event["id"]] = event_time(event)
    producer.flush()
    for future in futures:
        future.get(timeout=ACK_TIMEOUT_S)  # raises the KafkaError of a send that failed
    return sent_at


def event_time(event: dict[str, Any]) -> float:
    """An event's CloudEvents `time`, in seconds since the epoch."""
    return datetime.fromisoformat(event["time"]).timestamp()


def _paced(items: Iterable[Any], rate: float) -> Iterator[Any]:
    """The items, the k-th not before k / rate seconds after the first; each is taken from
    `items` only when its time has come."""
    started = time.perf_counter()
    iterator = iter(items)
    index = 0
    while True:
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            yield next(iterator)
        except StopIteration:
            return
        index += 1
