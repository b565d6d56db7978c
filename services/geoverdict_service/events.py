"""Image events: parse and validate what arrives on Kafka, and build events to publish."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from geoverdict_common import contract
from geoverdict_service.exceptions import BadEventError

EVENT_TYPE = "dev.geoverdict.image.v1"


@dataclass(frozen=True)
class Claim:
    """A location someone claims for the photo."""

    lat: float
    lon: float
    source: str  # "event" (the post) or "exif" (the photo's GPS tags)


@dataclass(frozen=True)
class Post:
    """What a verdict answers: the event's id and source, the post, the place it claims."""

    id: str
    source: str
    post_id: str
    claim: Claim | None


@dataclass(frozen=True)
class ImageEvent(Post):
    """A validated image event: a post and its image (exactly one of image_bytes / image_url)."""

    time: datetime | None
    image_bytes: bytes | None
    image_url: str | None


def parse_event(raw: bytes | None) -> ImageEvent:
    """Decode and validate one Kafka message value; raises BadEventError with a reason."""
    if not raw:
        raise BadEventError("empty message", "invalid_json")
    try:
        doc = json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: [[[[...
        raise BadEventError(f"not JSON: {exc}", "invalid_json") from exc
    event_id = _readable_id(doc)
    problems = contract.check(contract.IMAGE_EVENT, doc)
    if problems:
        raise BadEventError("; ".join(problems[:5]), "schema_violation", event_id)
    data = doc["data"]
    for name, value in (("id", doc["id"]), ("source", doc["source"]), ("post_id", data["post_id"])):
        if not _is_unicode(value):
            raise BadEventError(
                f"{name} is not valid Unicode (a lone surrogate escape such as \\ud800)",
                "schema_violation",
                event_id,
            )
    image = data["image"]
    image_bytes = None
    if "base64" in image:
        try:
            image_bytes = base64.b64decode(image["base64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadEventError(
                f"data.image.base64 is not base64: {exc}", "schema_violation", event_id
            ) from exc
    else:
        _check_url(image["url"], event_id)
    claim = None
    if "claimed_location" in data:
        loc = data["claimed_location"]
        claim = Claim(float(loc["lat"]), float(loc["lon"]), "event")
    return ImageEvent(
        id=doc["id"],
        source=doc["source"],
        post_id=data["post_id"],
        time=_parse_time(doc.get("time"), event_id),
        image_bytes=image_bytes,
        image_url=image.get("url"),
        claim=claim,
    )


def _refuse_constant(name: str) -> float:
    # Python's json reads NaN and Infinity, which no JSON producer may send; a NaN claim would
    # pass the schema's range checks (every comparison is false) and poison the verdict.
    raise ValueError(f"{name} is not a JSON number")


def _is_unicode(text: str) -> bool:
    """False for strings Python holds but UTF-8 cannot carry (lone surrogates from JSON
    escapes): they could become neither a Kafka key nor a header."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _readable_id(doc: Any) -> str | None:
    """The event's id, when it is one a dead letter can carry (even if the event is bad)."""
    if not isinstance(doc, dict):
        return None
    value = doc.get("id")
    if isinstance(value, str) and 0 < len(value) <= 256 and _is_unicode(value):
        return value
    return None


def _check_url(url: str, event_id: str | None) -> None:
    """Refuse a URL that cannot be taken apart (`http://[x/a.jpg`, port 99999) here, where
    it is one event's problem, not deep in the fetch."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise BadEventError(
            f"data.image.url is not a valid URL: {exc}", "schema_violation", event_id
        ) from exc
    if not parts.hostname:
        raise BadEventError("data.image.url has no host", "schema_violation", event_id)


def _parse_time(value: str | None, event_id: str | None) -> datetime | None:
    if value is None:
        return None
    try:  # the schema's date-time format is not checked (no rfc3339 validator installed)
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadEventError(
            f"time: {value[:64]!r} is not an RFC 3339 date-time", "schema_violation", event_id
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def make_event(
    post_id: str,
    *,
    image_bytes: bytes | None = None,
    image_url: str | None = None,
    claim: tuple[float, float] | None = None,
    source: str = "geoverdict/publish",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode image event, ready for json.dumps."""
    if (image_bytes is None) == (image_url is None):
        raise ValueError("give exactly one of image_bytes and image_url")
    image: dict[str, str] = (
        {"base64": base64.b64encode(image_bytes).decode()}
        if image_bytes is not None
        else {"url": str(image_url)}
    )
    data: dict[str, Any] = {"post_id": post_id, "image": image}
    if claim is not None:
        data["claimed_location"] = {"lat": claim[0], "lon": claim[1]}
    return {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": EVENT_TYPE,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
