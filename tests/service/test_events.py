"""Image events: what parse_event accepts, and the dead-letter reason of what it refuses."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from geoverdict_service.events import Claim, make_event, parse_event
from geoverdict_service.exceptions import BadEventError
from tests.service.samples import PARIS

Doc = dict[str, Any]


def encoded(event: Doc) -> bytes:
    return json.dumps(event).encode()


def refusal(raw: bytes | None) -> BadEventError:
    with pytest.raises(BadEventError) as caught:
        parse_event(raw)
    return caught.value


def test_an_event_survives_the_round_trip() -> None:
    image = b"\xff\xd8\xff\xe0 some jpeg \xff\xd9"
    doc = make_event("post-7", image_bytes=image, claim=PARIS, source="app/uploads")
    event = parse_event(encoded(doc))
    assert event.id == doc["id"]
    assert (event.post_id, event.source) == ("post-7", "app/uploads")
    assert (event.image_bytes, event.image_url) == (image, None)
    assert event.claim == Claim(PARIS[0], PARIS[1], "event")
    assert event.time is not None
    assert abs((datetime.now(UTC) - event.time).total_seconds()) < 60

    by_url = parse_event(encoded(make_event("post-8", image_url="https://img.example/8.jpg")))
    assert (by_url.image_bytes, by_url.image_url) == (None, "https://img.example/8.jpg")
    assert by_url.claim is None


def test_time_is_optional_and_read_in_every_rfc_3339_spelling() -> None:
    doc = make_event("p", image_bytes=b"x")
    del doc["time"]
    assert parse_event(encoded(doc)).time is None
    expected = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    for spelling in ("2024-05-01T10:00:00Z", "2024-05-01t10:00:00z", "2024-05-01T12:00:00+02:00"):
        doc["time"] = spelling
        assert parse_event(encoded(doc)).time == expected


def test_make_event_needs_exactly_one_image() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        make_event("p")
    with pytest.raises(ValueError, match="exactly one"):
        make_event("p", image_bytes=b"x", image_url="https://img.example/x.jpg")


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"{not json", b"\xff\xfe\x00garbage", b"[" * 100_000, b'{"a":' * 100_000],
    ids=["none", "empty", "syntax", "not-utf8", "deep-array", "deep-object"],
)
def test_what_is_not_json_is_invalid_json(raw: bytes | None) -> None:
    assert refusal(raw).reason == "invalid_json"


def test_nan_and_infinity_are_not_json() -> None:
    # Python's json reads them; a NaN claim passes every range check and poisons the verdict.
    for constant in ("NaN", "Infinity", "-Infinity"):
        raw = encoded(make_event("p", image_bytes=b"x", claim=(1.25, 2.0)))
        assert refusal(raw.replace(b"1.25", constant.encode())).reason == "invalid_json"


def _set(path: str, value: object) -> Callable[[Doc], None]:
    *parents, last = path.split("/")

    def change(doc: Doc) -> None:
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _delete(path: str) -> Callable[[Doc], None]:
    *parents, last = path.split("/")

    def change(doc: Doc) -> None:
        node = doc
        for key in parents:
            node = node[key]
        del node[last]

    return change


SCHEMA_VIOLATIONS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "missing id": (_delete("id"), "'id' is a required property"),
    "missing post_id": (_delete("data/post_id"), "'post_id' is a required property"),
    "missing image": (_delete("data/image"), "'image' is a required property"),
    "not an object": (_set("data", ["post", "image"]), "data: ['post', 'image'] is not of type"),
    "id a number": (_set("id", 42), "id: 42 is not of type 'string'"),
    "lat a string": (_set("data/claimed_location/lat", "48.8"), "lat: '48.8' is not of type"),
    "lat a boolean": (_set("data/claimed_location/lat", True), "lat: True is not of type"),
    "lat out of range": (_set("data/claimed_location/lat", 91), "91 is greater than the max"),
    "lon out of range": (_set("data/claimed_location/lon", -180.5), "-180.5 is less than the"),
    "wrong specversion": (_set("specversion", "0.3"), "specversion: '1.0' was expected"),
    "two images": (_set("data/image/url", "https://img.example/a.jpg"), "data/image:"),
    "empty base64": (_set("data/image/base64", ""), "data/image:"),
    "bad base64": (_set("data/image/base64", "not base64!"), "is not base64"),
    "ftp url": (_set("data/image", {"url": "ftp://img.example/a.jpg"}), "data/image:"),
    "bad time": (_set("time", "yesterday"), "time must be date-time (got 'yesterday')"),
}


@pytest.mark.parametrize("case", SCHEMA_VIOLATIONS, ids=list(SCHEMA_VIOLATIONS))
def test_what_breaks_the_contract_is_a_schema_violation_naming_the_field(case: str) -> None:
    change, expected = SCHEMA_VIOLATIONS[case]
    doc = make_event("post-1", image_bytes=b"\xff\xd8 jpeg", claim=PARIS)
    change(doc)
    error = refusal(encoded(doc))
    assert error.reason == "schema_violation"
    assert expected in str(error)


@pytest.mark.parametrize(
    ("field", "reported_at"),
    [
        ("id", "id"),
        ("source", "source"),
        ("data/post_id", "data/post_id"),
        ("data/image/base64", "data/image"),
    ],
)
def test_a_huge_field_is_refused_with_a_short_message(field: str, reported_at: str) -> None:
    doc = make_event("post-1", image_bytes=b"x")
    _set(field, base64.b64encode(b"x" * 1_500_000).decode())(doc)
    error = refusal(encoded(doc))
    assert error.reason == "schema_violation"
    assert str(error).startswith(f"{reported_at}: ")
    assert len(str(error)) < 300


def test_ids_that_utf8_cannot_carry_are_schema_violations() -> None:
    event = make_event("post", image_bytes=b"\xff\xd8jpeg")
    raw = json.dumps(event).replace(event["id"], "\\ud800").encode()
    with pytest.raises(BadEventError) as caught:
        parse_event(raw)
    assert caught.value.reason == "schema_violation"
    assert "not valid Unicode" in str(caught.value)
    assert caught.value.event_id is None


def test_a_schema_violation_keeps_the_id_it_could_read() -> None:
    raw = json.dumps({"specversion": "1.0", "id": "evt-7", "source": "s", "type": "t"}).encode()
    with pytest.raises(BadEventError) as caught:
        parse_event(raw)
    assert caught.value.event_id == "evt-7"


@pytest.mark.parametrize("url", ["http://[x/a.jpg", "https://img.example.com:99999/a.jpg"])
def test_a_url_that_cannot_be_taken_apart_is_refused_when_parsing(url: str) -> None:
    with pytest.raises(BadEventError, match="not a valid URL"):
        parse_event(json.dumps(make_event("post", image_url=url)).encode())
