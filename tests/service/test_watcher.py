"""`geoverdict watch`: reading verdicts off the topic and one aligned line per verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import pytest
from kafka import KafkaConsumer

from geoverdict_service.events import make_event, parse_event
from geoverdict_service.geo import PlaceNames
from geoverdict_service.verdicts import VerdictPolicy, build_verdict
from geoverdict_service.watcher import HEADER, format_row, verdicts
from tests.service import samples
from tests.service.samples import PARIS, SYDNEY, confident_paris

CACHE_COLUMN = HEADER.index("cache")


class ParisPlaces(PlaceNames):
    def lookup(self, lat: float, lon: float) -> dict[str, str] | None:
        return {"name": "Paris", "admin1": "Ile-de-France", "country_code": "FR"}


def verdict(
    claim: tuple[float, float] | None,
    post_id: str = "post-1",
    places: PlaceNames | None = None,
    cache_hit: bool = False,
) -> dict[str, Any]:
    event = parse_event(json.dumps(make_event(post_id, image_bytes=b"x", claim=claim)).encode())
    return build_verdict(
        event,
        confident_paris(),
        VerdictPolicy(mismatch_threshold_km=750, mismatch_max_mass=0.1),
        places,
        cache_hit=cache_hit,
        image_sha256="ab" * 32,
        timings_ms={},
        provenance=samples.provenance(),
    )


def test_a_row_shows_the_best_guess_the_claim_and_the_cache() -> None:
    row = format_row(verdict(PARIS, places=ParisPlaces(), cache_hit="exact"))
    assert row.startswith("post-1 ")
    assert "Paris, FR (48.86,2.35)" in row
    assert " 0.94 " in row
    assert " urban " in row
    assert " ok 0km " in row
    assert row[CACHE_COLUMN:].split()[0] == "hit"

    far = format_row(verdict(SYDNEY))
    assert "? (48.86,2.35)" in far  # no place names
    assert " MISMATCH 16960km " in far
    assert far[CACHE_COLUMN:].split()[0] == "miss"
    assert " - " in format_row(verdict(None))


@pytest.mark.parametrize(
    ("claim", "post_id"),
    [
        (None, "p"),
        (PARIS, "a-very-long-post-identifier-from-a-big-platform"),
        (SYDNEY, "p"),
        ((-PARIS[0], PARIS[1] - 180), "antipodes"),
    ],
)
def test_every_row_lines_up_under_the_header(
    claim: tuple[float, float] | None, post_id: str
) -> None:
    row = format_row(verdict(claim, post_id, places=ParisPlaces()))
    provenance = HEADER.index("provenance")  # the last column, free text
    assert row[provenance - 1] == " " and row[provenance] != " "
    assert row[CACHE_COLUMN - 1] == " "


@dataclass
class Record:
    value: bytes


def test_verdicts_skips_what_is_not_json_and_stops_at_max_count() -> None:
    records = [
        Record(b'{"id": "1"}'),
        Record(b"garbage"),
        Record(b'{"id": "2"}'),
        Record(b'{"id": "3"}'),
    ]
    consumer = cast(KafkaConsumer, records)
    assert [v["id"] for v in verdicts(consumer)] == ["1", "2", "3"]
    assert [v["id"] for v in verdicts(consumer, max_count=2)] == ["1", "2"]
