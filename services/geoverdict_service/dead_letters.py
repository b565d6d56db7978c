"""Dead-letter records: the original record with headers that say why, or a reference to it.

A record whose copy the broker would refuse (the original was near the size limit, or came
compressed and is larger once read) is replaced by a reference: where it was, how large, the
first bytes of its value. Header values are built so that encoding can never fail, whatever
the event held (lone surrogates, control characters, megabytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from geoverdict_service.events import ImageEvent
from geoverdict_service.exceptions import BadEventError, InternalError

MAX_MESSAGE_CHARS = 1000
VALUE_PREFIX_BYTES = 1024
MAX_REFERENCE_KEY_BYTES = 1024
# What a record costs beyond its key, value and headers (record and batch framing): an upper
# bound, so that a record estimated to fit does fit.
RECORD_OVERHEAD_BYTES = 256
TOO_LARGE = "too_large"


class Record(Protocol):
    """What a dead letter needs of a consumed record (kafka-python's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class DeadLetter:
    """One record for the dead-letter topic."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def reason(self) -> str:
        """The `reason` header (also the metric label)."""
        return dict(self.headers)["reason"].decode()


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """An upper bound of a record's size once produced."""
    header_bytes = sum(len(name) + len(data) + 10 for name, data in headers)
    return len(key or b"") + len(value or b"") + header_bytes + RECORD_OVERHEAD_BYTES


def printable(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Untrusted `text` made safe to log or to put in a header: control characters (a newline
    would forge a log line) and lone surrogates become escapes; at most `limit` characters."""
    return (
        "".join(
            ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
            for ch in text[:limit]
        )
        .encode("utf-8", "backslashreplace")
        .decode("utf-8")
    )


def header_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> bytes:
    """`text` as a header value that encoding cannot fail on and that forges no line."""
    return printable(text, limit).encode("utf-8")


def _origin(record: Record) -> list[tuple[str, bytes]]:
    return [
        ("original_topic", header_text(record.topic)),
        ("original_partition", str(record.partition).encode()),
        ("original_offset", str(record.offset).encode()),
    ]


def dead_letter(record: Record, failure: BadEventError, event_id: str | None) -> DeadLetter:
    """The original record, unchanged, with headers saying why it could not be answered."""
    headers = [
        ("reason", header_text(failure.reason)),
        ("message", header_text(str(failure))),
        *_origin(record),
    ]
    if event_id is not None:
        headers.append(("event_id", header_text(event_id)))
    if isinstance(failure, InternalError):
        headers.append(("exception_type", header_text(failure.exception_type)))
    # kafka-python cannot send a record with neither key nor value (a tombstone can arrive).
    return DeadLetter(record.key, record.value if record.value is not None else b"", headers)


def without_content(
    record: Record, failure: BadEventError, event_id: str | None, event: ImageEvent | None
) -> DeadLetter:
    """A dead letter that keeps no image and no URL token (GEOVERDICT_DEAD_LETTER_PAYLOAD=
    reference): where the record is, its hash and size, and what the event said besides."""
    value = record.value or b""
    body: dict[str, Any] = {
        "reason": failure.reason,
        "original_topic": record.topic,
        "original_partition": record.partition,
        "original_offset": record.offset,
        "original_size": len(value),
        "value_sha256": hashlib.sha256(value).hexdigest(),
    }
    if event is not None:
        image: dict[str, Any]
        if event.image_bytes is not None:
            image = {
                "sha256": hashlib.sha256(event.image_bytes).hexdigest(),
                "size": len(event.image_bytes),
            }
        else:
            parts = urlsplit(event.image_url or "")  # parsed before: cannot fail here
            image = {"url": f"{parts.scheme}://{parts.hostname}{parts.path}", "query_dropped": True}
        body["event"] = {
            "id": event.id,
            "source": event.source,
            "post_id": event.post_id,
            "image": image,
        }
    letter = dead_letter(record, failure, event_id)
    headers = [*letter.headers, ("payload", b"reference")]
    return DeadLetter(letter.key, json.dumps(body, separators=(",", ":")).encode(), headers)


def reference(record: Record, original_reason: str, event_id: str | None = None) -> DeadLetter:
    """A small record pointing at one that cannot be copied whole (reason `too_large`)."""
    value = record.value or b""
    key = record.key if record.key is None or len(record.key) <= MAX_REFERENCE_KEY_BYTES else None
    body = {
        "reason": TOO_LARGE,
        "original_reason": original_reason,
        "original_topic": record.topic,
        "original_partition": record.partition,
        "original_offset": record.offset,
        "original_size": len(value),
        "original_key_size": len(record.key or b""),
        "value_prefix_base64": base64.b64encode(value[:VALUE_PREFIX_BYTES]).decode(),
    }
    headers = [
        ("reason", TOO_LARGE.encode()),
        (
            "message",
            header_text(
                f"a copy of the {len(value)}-byte record would exceed the broker's message "
                f"size: only a reference is kept (it failed with {original_reason})"
            ),
        ),
        ("original_reason", header_text(original_reason)),
        *_origin(record),
    ]
    if event_id is not None:
        headers.append(("event_id", header_text(event_id)))
    return DeadLetter(key, json.dumps(body, separators=(",", ":")).encode(), headers)
