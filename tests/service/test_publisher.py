"""Publishing photos as image events: sources, EXIF claims, the inline size limit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import pytest
from kafka import KafkaProducer

from geoverdict_service.events import make_event, parse_event
from geoverdict_service.exceptions import BadEventError
from geoverdict_service.publisher import (
    MAX_INLINE_BYTES,
    event_for,
    event_time,
    expand_sources,
    publish,
    send_events,
)
from tests.photos import NEW_YORK_GPS, SYDNEY_GPS, gps_photo

KAFKA_MESSAGE_LIMIT = 1024 * 1024  # the broker's default message.max.bytes


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_folders_become_their_photos_and_the_rest_passes_through(tmp_path: Path) -> None:
    write(tmp_path / "trip" / "b.JPG", gps_photo(None))
    write(tmp_path / "trip" / "day2" / "a.png", gps_photo(None, "PNG"))
    write(tmp_path / "trip" / "notes.txt", b"not a photo")
    single = write(tmp_path / "single.webp", gps_photo(None, "WEBP"))
    url = "https://img.example/p/1.jpg"
    assert list(expand_sources([str(tmp_path / "trip"), single, url, "missing.jpg"])) == [
        str(tmp_path / "trip" / "b.JPG"),
        str(tmp_path / "trip" / "day2" / "a.png"),
        single,
        url,
        "missing.jpg",
    ]


def test_a_photo_s_gps_exif_becomes_the_claim(tmp_path: Path) -> None:
    photo = gps_photo(SYDNEY_GPS)
    source = write(tmp_path / "harbour.jpg", photo)
    event = parse_event(json.dumps(event_for(source)).encode())
    assert event.post_id == "harbour"
    assert event.image_bytes == photo
    assert event.claim is not None
    assert (event.claim.lat, event.claim.lon) == pytest.approx((-33.868, 151.21))
    given = event_for(source, claim=(48.8566, 2.3522))
    assert given["data"]["claimed_location"] == {"lat": 48.8566, "lon": 2.3522}
    assert "claimed_location" not in event_for(source, use_exif=False)["data"]
    assert (
        "claimed_location" not in event_for(write(tmp_path / "plain.png", gps_photo(None)))["data"]
    )


def test_a_file_that_is_no_image_is_still_published(tmp_path: Path) -> None:
    # The service dead-letters it with the model server's reason; publish does not judge.
    event = event_for(write(tmp_path / "scan.jpg", b"%PDF-1.7"))
    assert "claimed_location" not in event["data"]
    assert parse_event(json.dumps(event).encode()).image_bytes == b"%PDF-1.7"


def test_urls_are_published_by_reference_named_by_their_last_segment() -> None:
    event = event_for("https://img.example/posts/42/photo.jpg", claim=(1.0, 2.0))
    assert event["data"]["image"] == {"url": "https://img.example/posts/42/photo.jpg"}
    assert event["data"]["post_id"] == "photo.jpg"
    assert event_for("https://img.example/")["data"]["post_id"] == "https://img.example/"


def test_a_local_file_whose_name_starts_with_http_is_named_by_its_stem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "http_cat.jpg", gps_photo(None))
    event = event_for("http_cat.jpg")  # as `geoverdict publish http_cat.jpg` passes it
    assert "base64" in event["data"]["image"]
    assert event["data"]["post_id"] == "http_cat"


def test_the_inline_limit_keeps_events_under_kafka_s_message_limit(tmp_path: Path) -> None:
    at_limit = write(tmp_path / "at.jpg", b"\xff\xd8" + b"\x00" * (MAX_INLINE_BYTES - 2))
    value = json.dumps(event_for(at_limit), separators=(",", ":")).encode()
    assert len(value) < KAFKA_MESSAGE_LIMIT
    assert len(parse_event(value).image_bytes or b"") == MAX_INLINE_BYTES  # the service takes it
    over = write(tmp_path / "over.jpg", b"\xff\xd8" + b"\x00" * (MAX_INLINE_BYTES - 1))
    with pytest.raises(BadEventError, match="publish it by URL") as caught:
        event_for(over)
    assert caught.value.reason == "too_large"


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BadEventError) as caught:
        event_for(str(tmp_path / "gone.jpg"))
    assert caught.value.reason == "unreadable"


class Sent:
    """The future of one send, already acknowledged."""

    def __init__(self) -> None:
        self.waited = False

    def get(self, timeout: float | None = None) -> None:
        self.waited = True


class FakeProducer:
    """Records what KafkaProducer.send would have sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.futures: list[Sent] = []
        self.flushed = False

    def send(self, topic: str, key: bytes, value: bytes) -> Sent:
        self.sent.append((topic, key, value))
        self.futures.append(Sent())
        return self.futures[-1]

    def flush(self) -> None:
        self.flushed = True


def test_publish_sends_one_event_per_photo_keyed_by_its_id(tmp_path: Path) -> None:
    folder = tmp_path / "upload"
    sydney = write(folder / "sydney.jpg", gps_photo(SYDNEY_GPS))
    new_york = write(folder / "new_york.png", gps_photo(NEW_YORK_GPS, "PNG"))
    too_big = write(folder / "huge.jpg", b"\xff\xd8" + b"\x00" * MAX_INLINE_BYTES)
    producer = FakeProducer()
    result = publish(cast(KafkaProducer, producer), "images", [str(folder)], progress=False)

    assert set(result.event_ids) == {sydney, new_york}
    assert set(result.skipped) == {too_big}
    assert "inline images must be" in result.skipped[too_big]
    assert producer.flushed
    assert all(future.waited for future in producer.futures)
    events: dict[str, Any] = {}
    for topic, key, value in producer.sent:
        assert topic == "images"
        event = parse_event(value)
        assert key == event.id.encode()
        events[event.post_id] = event
    assert {source: events[Path(source).stem].id for source in (sydney, new_york)} == (
        result.event_ids
    )
    assert events["new_york"].claim is not None
    assert events["new_york"].claim.lon == pytest.approx(-74.006111)


def test_published_events_carry_their_time_from_which_latency_is_measured(tmp_path: Path) -> None:
    source = write(tmp_path / "plain.png", gps_photo(None, "PNG"))
    producer = FakeProducer()
    result = publish(cast(KafkaProducer, producer), "images", [source], progress=False)
    (event_id,) = result.sent_at
    assert event_id == result.event_ids[source]
    event = json.loads(producer.sent[0][2])
    assert result.sent_at[event_id] == event_time(event)


def test_a_paced_stream_builds_each_event_when_its_turn_comes() -> None:
    # 20 events/s: the fifth leaves 0.2 s after the first, and carries that time, not the
    # time the run began (a latency measured from it would include the wait).
    producer = FakeProducer()
    started = time.time()
    events = (make_event(f"p{k}", image_bytes=b"x") for k in range(5))
    sent = send_events(cast(KafkaProducer, producer), "images", events, rate=20.0)
    times = list(sent.values())
    assert len(times) == 5 and producer.flushed
    assert all(future.waited for future in producer.futures)
    assert times[-1] - times[0] == pytest.approx(0.2, abs=0.08)
    assert times[0] - started < 0.05


def test_a_burst_is_not_held_back_and_a_rate_must_be_positive() -> None:
    producer = FakeProducer()
    events = [make_event(f"p{k}", image_bytes=b"x") for k in range(50)]
    started = time.perf_counter()
    sent = send_events(cast(KafkaProducer, producer), "images", events)
    assert len(sent) == 50 and time.perf_counter() - started < 0.5
    assert [key for _, key, _ in producer.sent] == [e["id"].encode() for e in events]
    with pytest.raises(ValueError, match="must be > 0"):
        send_events(cast(KafkaProducer, producer), "images", events, rate=0)
