"""Dead-letter records: headers that always encode, references for what cannot be copied."""

from __future__ import annotations

import base64
import json

from geoverdict_service.dead_letters import dead_letter, header_text, record_size, reference
from geoverdict_service.exceptions import BadEventError, InternalError
from tests.service.fakes import record


def test_header_text_escapes_what_could_break_a_header_or_forge_a_log_line() -> None:
    assert header_text("plain text, é and 💥") == "plain text, é and 💥".encode()
    assert header_text("a\r\nb\x1b[31m") == b"a\\r\\nb\\x1b[31m"
    assert header_text("lone \ud800 surrogate") == b"lone \\ud800 surrogate"
    assert len(header_text("x" * 5000)) == 1000


def test_a_dead_letter_copies_the_record_and_says_why() -> None:
    letter = dead_letter(
        record(2, 41, b"{not json", b"k"), BadEventError("not JSON", "invalid_json"), "evt-1"
    )
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (b"k", b"{not json")
    assert headers["reason"] == b"invalid_json"
    assert headers["original_topic"] == b"images"
    assert (headers["original_partition"], headers["original_offset"]) == (b"2", b"41")
    assert headers["event_id"] == b"evt-1"
    assert "exception_type" not in headers


def test_an_internal_failure_names_the_exception_type() -> None:
    failure = InternalError("fetch", KeyError("x"))
    letter = dead_letter(record(0, 0, b"{}"), failure, None)
    assert dict(letter.headers)["exception_type"] == b"KeyError"
    assert dict(letter.headers)["reason"] == b"internal"


def test_a_reference_is_small_and_points_at_the_original() -> None:
    value = b"z" * 3_000_000
    letter = reference(record(1, 7, value, b"key"), "schema_violation", "evt-9")
    body = json.loads(letter.value)
    assert record_size(letter.key, letter.value, letter.headers) < 5000
    assert body["original_size"] == 3_000_000
    assert (body["original_partition"], body["original_offset"]) == (1, 7)
    assert base64.b64decode(body["value_prefix_base64"]) == value[:1024]
    assert dict(letter.headers)["original_reason"] == b"schema_violation"
    assert letter.reason == "too_large"


def test_record_size_is_an_upper_bound_of_what_the_broker_counts() -> None:
    headers = [("reason", b"x" * 10)]
    assert record_size(b"k", b"v" * 100, headers) >= 1 + 100 + len("reason") + 10
