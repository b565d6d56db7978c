"""No poison pill: whatever a record holds, it ends as one verdict or one dead letter.

Named cases first (each once stopped a real consumer for good), then a property-based test
that throws thousands of generated and mutated events at process() and checks the rule.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import TopicPartition

from geoverdict_service.events import make_event
from geoverdict_service.exceptions import BadImageError, FetchError
from tests.service import samples
from tests.service.conftest import jpeg
from tests.service.fakes import (
    DEAD,
    INPUT,
    VERDICTS,
    FakeConsumer,
    FakeInference,
    FakeProducer,
    Sent,
    build,
    city_for,
    step,
)

LIMIT = 64 * 1024  # a small broker limit keeps the oversized cases small


def only_dead_letter(producer: FakeProducer) -> Sent:
    assert producer.on(VERDICTS) == []
    (letter,) = producer.on(DEAD)
    return letter


def one_record(value: bytes | None, key: bytes | None = None, **overrides: Any) -> Sent:
    consumer = FakeConsumer(partitions=1)
    consumer.append(0, value, key)
    service, parts = build(consumer=consumer, **overrides)
    step(service, parts)
    assert consumer.committed == {TopicPartition(INPUT, 0): 1}  # the stream moves on
    return only_dead_letter(parts.producer)


def test_a_record_whose_copy_would_exceed_the_broker_limit_becomes_a_reference() -> None:
    huge = b"{" + b"x" * (LIMIT - 10)  # not JSON, and its dead letter would not fit
    producer = FakeProducer(max_request_size=LIMIT)
    letter = one_record(huge, b"key-1", producer=producer, kafka={"max_message_bytes": LIMIT})
    assert letter.header["reason"] == "too_large"
    assert letter.header["original_reason"] == "invalid_json"
    assert letter.header["original_offset"] == "0"
    body = json.loads(letter.value or b"")
    assert body["original_size"] == len(huge)
    assert base64.b64decode(body["value_prefix_base64"]) == huge[:1024]
    assert letter.key == b"key-1"


def test_records_at_just_under_and_over_the_limit_all_end_as_dead_letters() -> None:
    reasons = []
    for size in (LIMIT - 2048, LIMIT - 300, LIMIT, LIMIT + 1):
        producer = FakeProducer(max_request_size=LIMIT)
        letter = one_record(b"[" * size, producer=producer, kafka={"max_message_bytes": LIMIT})
        reasons.append(letter.header["reason"])
    # A copy with its headers fits only well under the limit; past that, a reference.
    assert reasons[0] == "invalid_json"
    assert reasons[1:] == ["too_large"] * 3


def test_a_broker_with_a_lower_limit_than_ours_gets_a_reference_after_refusing_the_copy() -> None:
    producer = FakeProducer(broker_limit=LIMIT)  # the topic's max.message.bytes is lower
    letter = one_record(b"not json " * (LIMIT // 9 + 10), producer=producer)
    assert letter.header["reason"] == "too_large"


def test_a_20_mib_event_that_arrived_compressed_is_dead_lettered_as_a_reference() -> None:
    # A producer's gzip made it small on the wire; decompressed by the consumer, it is 20 MiB.
    image = {"base64": "A" * (20 * 1024 * 1024)}
    doc = make_event("big", image_bytes=b"x") | {"data": {"post_id": "big", "image": image}}
    value = json.dumps(doc).encode()
    assert len(gzip.compress(value)) < 100 * 1024
    letter = one_record(value)
    assert letter.header["reason"] == "too_large"
    assert letter.header["original_reason"] == "schema_violation"
    assert letter.header["event_id"] == doc["id"]


def test_a_tombstone_without_key_or_value_is_a_dead_letter() -> None:
    letter = one_record(None, None)
    assert letter.header["reason"] == "invalid_json"
    assert letter.value == b""


def test_an_event_id_with_a_lone_surrogate_is_refused_and_headers_stay_utf8() -> None:
    doc = make_event("post", image_bytes=jpeg(1))
    raw = json.dumps(doc).replace(doc["id"], "\\ud800-evil").encode()
    letter = one_record(raw)
    assert letter.header["reason"] == "schema_violation"
    assert "event_id" not in letter.header  # not an id a header can carry


def test_a_schema_violation_with_a_readable_id_carries_it() -> None:
    doc = {"specversion": "1.0", "id": "evt-42", "source": "s", "type": "t"}  # no data
    letter = one_record(json.dumps(doc).encode())
    assert letter.header["reason"] == "schema_violation"
    assert letter.header["event_id"] == "evt-42"


def test_urls_that_cannot_be_taken_apart_are_dead_letters() -> None:
    for url in ("http://[x/a.jpg", "https://images.example.com:99999/a.jpg", "http://:80/a"):
        raw = json.dumps(make_event("post", image_url=url)).encode()
        letter = one_record(raw, fetch=lambda u: b"")
        assert letter.header["reason"] == "schema_violation", url


def test_an_unforeseen_exception_is_an_internal_dead_letter_with_its_type() -> None:
    def explode(url: str) -> bytes:
        raise ZeroDivisionError("nobody saw this coming")

    raw = json.dumps(make_event("post", image_url="https://img.example.com/a.jpg")).encode()
    letter = one_record(raw, fetch=explode)
    assert letter.header["reason"] == "internal"
    assert letter.header["exception_type"] == "ZeroDivisionError"


def test_control_characters_in_a_message_do_not_forge_header_lines() -> None:
    def refuse(url: str) -> bytes:
        raise FetchError("bad\r\nreason: forged\x1b[31m", "fetch_failed")

    raw = json.dumps(make_event("post", image_url="https://img.example.com/a.jpg")).encode()
    letter = one_record(raw, fetch=refuse)
    assert "\n" not in letter.header["message"]
    assert "\x1b" not in letter.header["message"]


# -- property-based --------------------------------------------------------------------------
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NASTY_TEXT = st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "line\r\nbreak", "\x1b[2J", "é" * 300, "", " ", "💥"]
)
NASTY_URL = st.sampled_from(
    [
        "http://[x/a.jpg",
        "http://host:99999/a",
        "https://",
        "http://a b/",
        "http://%zz/",
        "https://img.example.com/a.jpg",
        "http://[::1]:80/a",
        "HTTP://IMG.EXAMPLE.COM/\x00",
    ]
)
IMAGES = st.sampled_from([jpeg(1), jpeg(2), b"\xff\xd8truncated", b"", b"GIF89a", b"\x00" * 9])
PATHS = [
    ("id",),
    ("source",),
    ("type",),
    ("time",),
    ("specversion",),
    ("data",),
    ("data", "post_id"),
    ("data", "image"),
    ("data", "image", "base64"),
    ("data", "image", "url"),
    ("data", "claimed_location"),
    ("data", "claimed_location", "lat"),
]


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = doc
    for key in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(key, {})
    if isinstance(node, dict):
        node[path[-1]] = value


@st.composite
def records(draw: st.DrawFn) -> bytes | None:
    """A record value: a valid event, a mutated one, or anything at all."""
    kind = draw(st.sampled_from(["valid", "mutated", "url", "bytes", "json", "none"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    image = draw(IMAGES)
    claim = draw(st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180)))
    if kind == "url":
        doc = make_event("p", image_url="https://img.example.com/a.jpg", claim=claim)
        doc["data"]["image"]["url"] = draw(NASTY_URL | st.text(max_size=40).map("http://".__add__))
    else:
        doc = make_event(
            draw(st.text(min_size=1, max_size=20)), image_bytes=image or b"x", claim=claim
        )
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            _set(doc, draw(st.sampled_from(PATHS)), draw(JSON | NASTY_TEXT))
    # ensure_ascii writes lone surrogates as \\ud800 escapes, as a hostile producer would.
    return json.dumps(doc).encode()


def _answer(image: bytes) -> dict[str, Any]:
    if not image.startswith(b"\xff\xd8"):
        raise BadImageError("not a JPEG", "undecodable", samples.MODEL_VERSION)
    if b"truncated" in image:
        return {"model_version": samples.MODEL_VERSION}  # breaks the contract
    return city_for(image)


def _fetch(url: str) -> bytes:
    if "a.jpg" in url:
        return jpeg(5)
    if "IMG" in url:
        raise RuntimeError("an unforeseen failure")
    raise FetchError("refused", "fetch_disallowed")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=12))
def test_every_record_ends_as_exactly_one_verdict_or_one_dead_letter(
    values: list[bytes | None],
) -> None:
    consumer = FakeConsumer(partitions=1)
    for value in values:
        consumer.append(0, value, b"k" if value is None else None)
    service, parts = build(
        consumer=consumer,
        inference=FakeInference(_answer),
        fetch=_fetch,
        producer=FakeProducer(max_request_size=LIMIT),
        kafka={"max_message_bytes": LIMIT},
    )

    assert step(service, parts) == len(values)  # nothing raised

    dead_offsets = [int(s.header["original_offset"]) for s in parts.producer.on(DEAD)]
    assert len(dead_offsets) == len(set(dead_offsets))
    answered = [r for r in consumer.log[TopicPartition(INPUT, 0)] if r.offset not in dead_offsets]
    verdict_keys = Counter((s.key or b"").decode() for s in parts.producer.on(VERDICTS))
    assert verdict_keys == Counter(json.loads(r.value)["id"] for r in answered)
    assert consumer.committed == {TopicPartition(INPUT, 0): len(values)}
    for letter in parts.producer.on(DEAD):
        assert letter.header["reason"]  # headers decode as UTF-8


def test_logs_carry_no_url_token_and_no_forged_line(caplog: pytest.LogCaptureFixture) -> None:
    from geoverdict_service.fetch import FetchPolicy, fetch_image

    caplog.set_level(logging.INFO)
    presigned = "https://img.example.com/private/a.jpg?X-Amz-Signature=SECRET"
    raw = json.dumps(make_event("post", image_url=presigned)).encode()
    letter = one_record(raw, fetch=lambda url: fetch_image(url, FetchPolicy()))
    assert letter.header["reason"] == "fetch_disallowed"
    assert "SECRET" not in letter.header["message"]

    def forge(url: str) -> bytes:
        raise FetchError("refused\n2026-01-01 INFO all good", "fetch_failed")

    one_record(json.dumps(make_event("p", image_url=presigned)).encode(), fetch=forge)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRET" not in logged
    assert "\n2026-01-01 INFO all good" not in logged
    assert "refused\\n2026-01-01" in logged
