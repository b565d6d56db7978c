"""When a photo was taken: its EXIF DateTimeOriginal (with OffsetTimeOriginal when the camera
wrote one), or its Content Credentials' capture time, and how that compares with the post.

An analyst reads "taken 6 years before this post" beside a claim that it shows today's events.
Cameras write local time; only newer ones add the UTC offset, so a time without one is read as
UTC and may be off by up to 14 hours: a photo "taken after its post" is reported as such only
beyond that uncertainty (and a few minutes of clock skew).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

from PIL import Image

from geoverdict_common.contract_types import Capture

_EXIF_IFD = 0x8769
_DATE_TIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_DATE_TIME = 0x0132  # IFD0's DateTime: when the file was last changed, not when taken: unused
_EXIF_TIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")

# EXIF 1.0 is from 1995; a digital capture time before 1990 is a camera's reset clock or a forgery.
EARLIEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=UTC)
# A local time read as UTC is off by at most 14 hours (UTC+14); clocks drift a few minutes.
OFFSET_UNCERTAINTY = timedelta(hours=14)
CLOCK_SKEW = timedelta(minutes=10)

Source = Literal["exif", "c2pa"]


@dataclass(frozen=True)
class CaptureTime:
    """A capture time as read, and whether its UTC offset was known."""

    at: datetime  # timezone-aware (UTC when the offset was unknown)
    source: Source
    offset_known: bool


def _text(value: object) -> str | None:
    """An EXIF string field (ASCII, maybe NUL-padded) as text."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else None


def exif_datetime(value: object) -> datetime | None:
    """An EXIF 'YYYY:MM:DD HH:MM:SS' as a naive datetime (local time at the camera); None when
    absent or malformed (a zeroed '0000:00:00 00:00:00' included)."""
    text = _text(value)
    match = _EXIF_TIME.match(text) if text is not None else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:  # month 0, day 31 of February, ...
        return None


def utc_offset(value: object) -> timezone | None:
    """An EXIF OffsetTime '+HH:MM' as a time zone; None when absent or impossible."""
    text = _text(value)
    match = _OFFSET.match(text) if text is not None else None
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def parse_exif_time(value: object, offset: object = None) -> CaptureTime | None:
    """An EXIF 'YYYY:MM:DD HH:MM:SS' (and '+HH:MM' offset) as a capture time; None when absent
    or malformed."""
    naive = exif_datetime(value)
    if naive is None:
        return None
    zone = utc_offset(offset)
    if zone is None:
        return CaptureTime(naive.replace(tzinfo=UTC), "exif", offset_known=False)
    return CaptureTime(naive.replace(tzinfo=zone).astimezone(UTC), "exif", offset_known=True)


def exif_capture_time(image: bytes) -> CaptureTime | None:
    """The photo's DateTimeOriginal from its EXIF; None when it has none or is not an image.
    Reads the header only (no pixel decoded)."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            exif = opened.getexif().get_ifd(_EXIF_IFD)
            return parse_exif_time(exif.get(_DATE_TIME_ORIGINAL), exif.get(_OFFSET_TIME_ORIGINAL))
    except Exception:  # strangers' bytes: a broken header just means no capture time
        return None


def in_words(delta: timedelta) -> str:
    """A duration as an analyst reads it: '6 years', '3 months', '5 days', '2 hours'."""
    seconds = abs(delta.total_seconds())
    for unit, size in (
        ("year", 365.25 * 86400),
        ("month", 30.44 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "less than a minute"


def capture_report(
    capture: CaptureTime | None, posted_at: datetime | None, now: datetime | None = None
) -> Capture | None:
    """The verdict's `provenance.capture`: when, from what, how long before the post, and
    whether that is possible."""
    if capture is None:
        return None
    now = now or datetime.now(UTC)
    slack = CLOCK_SKEW + (timedelta(0) if capture.offset_known else OFFSET_UNCERTAINTY)
    before = posted_at - capture.at if posted_at is not None else None
    check: Literal["plausible", "after_post", "implausible"] = "plausible"
    if capture.at < EARLIEST_PLAUSIBLE or capture.at > now + slack:
        check = "implausible"
    elif before is not None and before < -slack:
        check = "after_post"
    return {
        "captured_at": capture.at.isoformat(),
        "source": capture.source,
        "offset_known": capture.offset_known,
        "before_post_s": round(before.total_seconds(), 3) if before is not None else None,
        "before_post": (
            (in_words(before) if before >= timedelta(0) else f"{in_words(before)} after")
            if before is not None
            else None
        ),
        "check": check,
    }
