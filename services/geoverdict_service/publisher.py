"""Publish photos (files, folders or URLs) as image events, with their GPS EXIF as the claim."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Published:
    """What was sent: event ids by source path or URL, and what was skipped and why."""

    event_ids: dict[str, str]
    skipped: dict[str, str]


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
            "(Kafka's 1 MiB message limit): publish it by URL instead", "too_large",
        )  # fmt: skip
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
) -> Published:
    """Send one event per source; waits until Kafka acknowledged all of them."""
    expanded = list(expand_sources(sources))
    ids: dict[str, str] = {}
    skipped: dict[str, str] = {}
    futures = []
    for source in tqdm(expanded, desc="publishing", unit="photo", disable=not progress):
        try:
            event = event_for(source, claim, use_exif)
        except BadEventError as exc:
            skipped[source] = str(exc)
            continue
        value = json.dumps(event, separators=(",", ":")).encode()
        futures.append(producer.send(topic, key=event["id"].encode(), value=value))
        ids[source] = event["id"]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    return Published(ids, skipped)
