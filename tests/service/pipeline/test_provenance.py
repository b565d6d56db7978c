"""The provenance stage on fakes: reposts found (within a batch and through the index), a
near-duplicate's prediction reused, Redis down costing nothing but the provenance."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from PIL import Image, ImageOps

from geoverdict_service.cache import cache_key
from geoverdict_service.events import make_event
from geoverdict_service.exceptions import IndexUnavailableError
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.provenance import SightingRules, Sightings, fingerprint_key
from geoverdict_service.provenance.credentials import CredentialReader
from geoverdict_service.provenance.fingerprints import MATCH_DISTANCE, Fingerprint, fingerprint
from geoverdict_service.provenance.index import Match, Sighting
from geoverdict_service.provenance.report import ProvenancePolicy
from tests.service.fakes import DEAD, VERDICTS, FakeCache, FakeConsumer, build, city_for, step

KYIV, LISBON = (50.45, 30.52), (38.72, -9.14)  # about 3,300 km apart


def photo(seed: int) -> bytes:
    """A textured photo-like JPEG (a flat test image is too plain to match anything)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((320, 240), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def altered(image: bytes) -> bytes:
    """A repost: mirrored, resized, re-encoded."""
    opened = ImageOps.mirror(Image.open(io.BytesIO(image)).convert("RGB")).resize((240, 180))
    out = io.BytesIO()
    opened.save(out, "JPEG", quality=60)
    return out.getvalue()


class FakeIndex:
    """An index that knows `known` (or fails), and keeps what it is asked to record."""

    def __init__(self, known: Match | None = None, broken: bool = False) -> None:
        self.known, self.broken = known, broken
        self.recorded: list[Sighting] = []
        self.hints: list[list[tuple[str, int] | None]] = []  # the photos known per lookup

    def find_many(
        self,
        queries: Sequence[tuple[str, Fingerprint]],
        known: Sequence[tuple[str, int] | None] | None = None,
    ) -> list[Match | None]:
        self.hints.append(list(known or []))
        if self.broken:
            raise IndexUnavailableError("Redis is down")
        return [self.known for _ in queries]

    def record_many(
        self, entries: Sequence[tuple[Fingerprint, Sighting, Match | None]]
    ) -> list[str]:
        if self.broken:
            raise IndexUnavailableError("Redis is down")
        self.recorded += [sighting for _, sighting, _ in entries]
        return ["p" for _ in entries]

    def close(self) -> None:
        pass


def service_with(index: FakeIndex, cache: FakeCache | None = None):  # type: ignore[no-untyped-def]
    consumer = FakeConsumer(partitions=1)
    service, parts = build(consumer=consumer, cache=cache or FakeCache())
    rules = SightingRules(ProvenancePolicy(min_precision_km=5.0), MATCH_DISTANCE, 16)
    service.sightings = Sightings(
        rules,
        Metrics(),
        index=index,  # type: ignore[arg-type]
        reader=CredentialReader(eager=False),
        cache=parts.cache,
    )
    return service, parts, consumer


def publish(consumer: FakeConsumer, image: bytes, post: str, claim: tuple[float, float]) -> str:
    event = make_event(post, image_bytes=image, claim=claim)
    consumer.append(0, json.dumps(event).encode())
    return str(event["id"])


def verdicts(parts) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {v["post_id"]: v for v in (json.loads(s.value) for s in parts.producer.on(VERDICTS))}


def test_a_repost_claiming_another_place_names_the_first_post_and_its_claim() -> None:
    index = FakeIndex()
    service, parts, consumer = service_with(index)
    first = publish(consumer, photo(1), "original", KYIV)
    publish(consumer, altered(photo(1)), "repost", LISBON)
    publish(consumer, photo(2), "unrelated", LISBON)
    step(service, parts)
    answers = verdicts(parts)
    repost = answers["repost"]["provenance"]
    assert repost["near_duplicate"]["event_id"] == first
    assert repost["near_duplicate"]["distance"] <= MATCH_DISTANCE
    (claim,) = repost["earlier_claims"]
    assert abs(claim["lat"] - KYIV[0]) < 0.1 and claim["distance_km"] > 3000
    assert repost["recycled_claim"] is True
    assert answers["unrelated"]["provenance"]["near_duplicate"] is None
    assert answers["original"]["provenance"]["recycled_claim"] is False
    assert [s.post_id for s in index.recorded] == ["original", "repost", "unrelated"]


def test_the_same_bytes_again_name_their_photo_to_the_index() -> None:
    index = FakeIndex()
    service, parts, consumer = service_with(index)
    publish(consumer, photo(4), "first", KYIV)
    step(service, parts)
    publish(consumer, photo(4), "again", LISBON)
    publish(consumer, photo(5), "other", LISBON)
    step(service, parts)
    # recorded as photo "p" the first time: read directly the second (no buckets probed)
    assert index.hints == [[None], [("p", 0), None]]


def test_a_near_duplicate_is_answered_with_its_photos_prediction() -> None:
    cache = FakeCache()
    version = "unit-0123abcd"
    earlier = cache_key(version, "a" * 64)
    cache.store[earlier] = {**city_for(photo(3)), "model_version": version}
    first = Sighting("e-1", "p-1", "s", datetime(2020, 1, 1, tzinfo=UTC), KYIV, earlier)
    index = FakeIndex(Match("p", 4, first, 3, ((*KYIV, first.seen_at),), earlier))
    service, parts, consumer = service_with(index, cache)
    publish(consumer, altered(photo(3)), "repost", LISBON)
    step(service, parts)
    verdict = verdicts(parts)["repost"]
    assert verdict["cache_hit"] == "near_duplicate"
    assert parts.inference.requests == []  # one model call saved
    assert verdict["provenance"]["near_duplicate"]["times_seen"] == 3
    assert verdict["provenance"]["recycled_claim"] is True


def test_with_the_index_down_every_verdict_still_goes_out_marked_unavailable() -> None:
    service, parts, consumer = service_with(FakeIndex(broken=True))
    for k in range(3):
        publish(consumer, photo(10 + k), f"post-{k}", KYIV)
    step(service, parts)
    answers = verdicts(parts)
    assert len(answers) == 3
    assert {v["provenance"]["index"] for v in answers.values()} == {"unavailable"}
    assert all(v["provenance"]["fingerprint"] is not None for v in answers.values())


def test_a_fingerprint_stored_by_an_earlier_version_is_computed_again() -> None:
    # an upgrade that changes what a fingerprint holds must not keep answering with old ones
    cache = FakeCache()
    image = photo(6)
    sha = hashlib.sha256(image).hexdigest()
    stale = fingerprint(photo(7)).to_json()  # some other photo's, as a stand-in for old ones
    cache.store[f"geoverdict:fingerprint:{sha}"] = stale  # before versions were in the key
    cache.store[fingerprint_key(sha).replace(":v", ":v0", 1)] = stale
    service, parts, consumer = service_with(FakeIndex(), cache)
    publish(consumer, image, "post", KYIV)
    step(service, parts)
    pdq = verdicts(parts)["post"]["provenance"]["fingerprint"]["pdq"]
    assert pdq == fingerprint(image).hashes[0].hex() != stale["hashes"][0]
    assert cache.store[fingerprint_key(sha)]["hashes"][0] == pdq  # stored under this version


def test_a_tampered_manifest_is_a_verdict_marked_invalid_never_a_dead_letter() -> None:
    from tests.service.provenance.c2pa_signing import photo as signable
    from tests.service.provenance.c2pa_signing import sign

    tampered = bytearray(sign(signable(), "image/jpeg"))
    tampered[-200] ^= 0xFF  # pixels changed after signing
    service, parts, consumer = service_with(FakeIndex())
    publish(consumer, bytes(tampered), "tampered", KYIV)
    publish(consumer, photo(8), "plain", KYIV)
    step(service, parts)
    answers = verdicts(parts)
    c2pa = answers["tampered"]["provenance"]["c2pa"]
    assert c2pa["state"] == "invalid" and "assertion.dataHash.mismatch" in c2pa["reason"]
    assert answers["plain"]["provenance"]["c2pa"]["state"] == "absent"
    assert not parts.producer.on(DEAD)
