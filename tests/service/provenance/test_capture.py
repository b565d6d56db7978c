"""When a photo was taken: EXIF DateTimeOriginal read, and its place beside the post."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from PIL import Image

from geoverdict_service.provenance.capture import (
    CaptureTime,
    capture_report,
    exif_capture_time,
    parse_exif_time,
)

POSTED = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def jpeg_taken(when: str, offset: str | None = None) -> bytes:
    image = Image.new("RGB", (32, 24), (40, 90, 160))
    exif = Image.Exif()
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x9003] = when
    if offset is not None:
        exif_ifd[0x9011] = offset
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_a_photo_taken_six_years_before_its_post_says_so() -> None:
    capture = exif_capture_time(jpeg_taken("2020:11:30 09:15:00", "+02:00"))
    assert capture == CaptureTime(datetime(2020, 11, 30, 7, 15, tzinfo=UTC), "exif", True)
    report = capture_report(capture, POSTED, now=POSTED)
    assert report is not None
    assert (report["before_post"], report["check"]) == ("6 years", "plausible")
    assert report["before_post_s"] == (POSTED - capture.at).total_seconds()


def test_without_an_offset_the_time_is_read_as_utc_and_said_to_be_so() -> None:
    capture = exif_capture_time(jpeg_taken("2026:12:05 20:00:00"))
    assert capture is not None and not capture.offset_known
    # 8 hours after the post, but a local time without its offset may be 14 hours off
    report = capture_report(capture, POSTED, now=POSTED + timedelta(days=1))
    assert report is not None and report["check"] == "plausible"


def test_a_capture_after_the_post_or_before_digital_cameras_is_flagged() -> None:
    after = capture_report(
        exif_capture_time(jpeg_taken("2026:12:07 12:00:00", "+00:00")),
        POSTED,
        now=POSTED + timedelta(days=3),
    )
    assert after is not None and after["check"] == "after_post"
    assert after["before_post"] == "2 days after"
    ancient = capture_report(parse_exif_time("1970:01:01 00:00:00", "+00:00"), POSTED, now=POSTED)
    assert ancient is not None and ancient["check"] == "implausible"


def test_missing_zeroed_or_broken_times_are_no_capture_time() -> None:
    assert exif_capture_time(jpeg_taken("0000:00:00 00:00:00")) is None
    assert exif_capture_time(jpeg_taken("2021:02:30 10:00:00")) is None  # no 30 February
    assert exif_capture_time(b"not an image") is None
    assert parse_exif_time("2021:01:01 10:00:00", "+99:00") == CaptureTime(
        datetime(2021, 1, 1, 10, tzinfo=UTC), "exif", False
    )
    assert capture_report(None, POSTED) is None
