"""The near-duplicate index, on a redis-server of its own, signed in as the consumer's ACL user."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import redis

from geoverdict_service.exceptions import IndexUnavailableError, InvalidSettingsError
from geoverdict_service.provenance.index import (
    IndexSettings,
    Match,
    NearDuplicateIndex,
    Sighting,
    as_array,
    chunks,
    distance,
)
from geoverdict_stack.redis import RedisServer
from tests.service.conftest import needs_redis
from tests.service.localhttp import closed_port

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Print:
    """A fingerprint as the index sees one."""

    hashes: tuple[bytes, ...]
    variants: tuple[bytes, ...] = ()
    usable: bool = True


def random_hash(rng: np.random.Generator) -> bytes:
    return rng.integers(0, 256, 32, dtype=np.uint8).tobytes()


def flipped(h: bytes, bits: int, rng: np.random.Generator) -> bytes:
    """`h` with `bits` distinct bits flipped: at exactly that distance."""
    out = np.unpackbits(np.frombuffer(h, np.uint8))
    out[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(out).tobytes()


def sighting(event: str, claim: tuple[float, float] | None = None, post: str = "") -> Sighting:
    return Sighting(
        event_id=event,
        post_id=post or f"post-{event}",
        source="tests",
        seen_at=T0 + timedelta(minutes=len(event)),
        claim=claim,
        prediction_key=f"pred-{event}",
    )


@pytest.fixture
def settings() -> IndexSettings:
    """A key prefix of this test's own (under geoverdict:*, the ACL's pattern)."""
    return IndexSettings(max_distance=31, key_prefix=f"geoverdict:photo-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def index(server: RedisServer, settings: IndexSettings) -> Iterator[NearDuplicateIndex]:
    made = NearDuplicateIndex.from_url(server.url, settings, timeout_s=2.0)
    yield made
    made.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def keys_under(server: RedisServer, prefix: str) -> list[str]:
    admin = redis.Redis.from_url(server.url_for("admin"))
    try:
        return sorted(k.decode() for k in admin.scan_iter(f"{prefix}:*"))
    finally:
        admin.close()


def see(index: NearDuplicateIndex, event: str, fp: Print, **kwargs: object) -> Match | None:
    """What the consumer does per event: look up, then record."""
    [match] = index.find_many([(event, fp)])
    index.record_many([(fp, sighting(event, **kwargs), match)])  # type: ignore[arg-type]
    return match


def test_distance_and_the_pigeonhole_guarantee(rng: np.random.Generator) -> None:
    a = random_hash(rng)
    for bits in (0, 1, 15, 31, 128):
        b = flipped(a, bits, rng)
        assert distance(a, b) == bits
        if bits <= 15:  # 16 chunks, 15 flips: one chunk is intact in every table
            for tables in (1, 2):
                assert (chunks(as_array([a]), tables) == chunks(as_array([b]), tables)).any()


def test_settings_are_checked() -> None:
    with pytest.raises(InvalidSettingsError, match="max_claims must be >= 1, got 0"):
        IndexSettings(max_claims=0)
    with pytest.raises(InvalidSettingsError, match="max_distance"):
        IndexSettings(max_distance=256)


@needs_redis
def test_a_near_duplicate_finds_the_first_sighting_and_the_claims_newest_first(
    index: NearDuplicateIndex, rng: np.random.Generator
) -> None:
    original = random_hash(rng)
    assert see(index, "e1", Print((original,)), claim=(48.8, 2.3)) is None
    repost = see(index, "e22", Print((flipped(original, 10, rng),)), claim=(40.7, -74.0))
    assert repost is not None and repost.distance == 10 and repost.times_seen == 1
    [match] = index.find_many([("e333", Print((flipped(original, 24, rng),)))])
    assert match is not None
    assert match.distance == 24  # to the indexed hash: a repost is counted, never indexed
    assert match.first.event_id == "e1" and match.first.post_id == "post-e1"
    assert match.first.seen_at == T0 + timedelta(minutes=2)
    assert match.first.claim == (48.8, 2.3)
    assert match.times_seen == 2
    assert [(lat, lon) for lat, lon, _ in match.claims] == [(40.7, -74.0), (48.8, 2.3)]
    assert match.claims[0][2] == T0 + timedelta(minutes=3)
    assert match.prediction_key == "pred-e1"


@needs_redis
def test_beyond_max_distance_nothing_is_found_and_a_mirror_is_found_by_its_variant(
    index: NearDuplicateIndex, rng: np.random.Generator
) -> None:
    original = random_hash(rng)
    see(index, "e1", Print((original,)))
    far = Print((flipped(original, 32, rng),))
    mirrored = Print((random_hash(rng),), variants=(flipped(original, 5, rng),))
    flat = Print((original,), usable=False)  # low quality: never matches
    assert index.find_many([("e2", far), ("e3", mirrored), ("e4", flat)])[0::2] == [None, None]
    [_, found, _] = index.find_many([("e2", far), ("e3", mirrored), ("e4", flat)])
    assert found is not None and found.distance == 5 and found.first.event_id == "e1"


@needs_redis
def test_a_replayed_batch_is_recorded_once_and_never_finds_itself(
    index: NearDuplicateIndex, rng: np.random.Generator
) -> None:
    original = random_hash(rng)
    batch = [("e1", Print((original,))), ("e2", Print((flipped(original, 3, rng),)))]
    see(index, *batch[0], claim=(1.0, 1.0))
    for _ in range(3):  # the second event's batch, aborted after the index was written, replayed
        [match] = index.find_many([batch[1]])
        assert match is not None and match.first.event_id == "e1"
        assert match.times_seen == 1 and [c[:2] for c in match.claims] == [(1.0, 1.0)]
        index.record_many([(batch[1][1], sighting("e2", claim=(2.0, 2.0)), match)])
    assert index.find_many([batch[0]]) == [None]  # the first event's own photo is not earlier
    [later] = index.find_many([("e3", Print((original,)))])
    assert later is not None and later.times_seen == 2
    assert [c[:2] for c in later.claims] == [(2.0, 2.0), (1.0, 1.0)]


@needs_redis
def test_near_duplicates_new_in_one_batch_make_one_photo(
    index: NearDuplicateIndex, rng: np.random.Generator
) -> None:
    original = random_hash(rng)
    first, second = Print((original,)), Print((flipped(original, 4, rng),))
    ids = index.record_many([(first, sighting("e1"), None), (second, sighting("e2"), None)])
    assert ids[0] == ids[1]
    [match] = index.find_many([("e3", first)])
    assert match is not None and match.times_seen == 2


@needs_redis
def test_claims_are_capped(server: RedisServer, rng: np.random.Generator) -> None:
    settings = IndexSettings(max_claims=3, key_prefix=f"geoverdict:photo-{uuid.uuid4().hex[:8]}")
    index = NearDuplicateIndex.from_url(server.url, settings, timeout_s=2.0)
    original = random_hash(rng)
    for k in range(6):
        see(index, f"e{k}", Print((flipped(original, k, rng),)), claim=(float(k), 0.0))
    [match] = index.find_many([("last", Print((original,)))])
    assert match is not None and match.times_seen == 6
    assert [lat for lat, _, _ in match.claims] == [5.0, 4.0, 3.0]
    index.close()


@needs_redis
def test_everything_expires_after_the_retention(
    server: RedisServer, rng: np.random.Generator
) -> None:
    prefix = f"geoverdict:photo-{uuid.uuid4().hex[:8]}"
    index = NearDuplicateIndex.from_url(
        server.url, IndexSettings(retention_s=1, key_prefix=prefix), timeout_s=2.0
    )
    original = random_hash(rng)
    see(index, "e1", Print((original,)), claim=(1.0, 1.0))
    assert index.find_many([("e2", Print((original,)))])[0] is not None
    assert keys_under(server, prefix)
    time.sleep(1.2)
    assert index.find_many([("e2", Print((original,)))]) == [None]
    time.sleep(1.9)  # buckets go once all their records are older than the retention
    assert keys_under(server, prefix) == []
    index.close()


@needs_redis
def test_erasing_an_event_and_a_post(
    server: RedisServer,
    settings: IndexSettings,
    index: NearDuplicateIndex,
    rng: np.random.Generator,
) -> None:
    original = random_hash(rng)
    see(index, "e1", Print((original,)), claim=(1.0, 1.0), post="p1")
    see(index, "e2", Print((original,)), claim=(2.0, 2.0), post="p2")
    see(index, "e3", Print((original,)), claim=(3.0, 3.0), post="p3")
    see(index, "e4", Print((original,)), claim=(4.0, 4.0), post="p2")  # p2 again
    assert index.erase_event("e3") == 1 and index.erase_event("e3") == 0
    [match] = index.find_many([("q", Print((original,)))])
    assert match is not None and match.times_seen == 3
    assert [c[0] for c in match.claims] == [4.0, 2.0, 1.0]
    assert index.erase_post("tests", "p2") == 2
    [match] = index.find_many([("q", Print((original,)))])
    assert match is not None and match.times_seen == 1 and [c[0] for c in match.claims] == [1.0]
    assert index.erase_event("e1") == 1  # its only sighting: the photo goes, hashes included
    assert index.find_many([("q", Print((original,)))]) == [None]
    assert keys_under(server, settings.key_prefix) == []


@needs_redis
def test_erasing_the_first_sighting_erases_the_photo(
    server: RedisServer,
    settings: IndexSettings,
    index: NearDuplicateIndex,
    rng: np.random.Generator,
) -> None:
    original, other = random_hash(rng), random_hash(rng)
    see(index, "e1", Print((original,)), claim=(1.0, 1.0))
    see(index, "e2", Print((original,)), claim=(2.0, 2.0))
    see(index, "x1", Print((other,)))
    assert index.erase_event("e1") == 1  # the photo's record names e1's post: all of it goes
    assert index.find_many([("q", Print((original,)))]) == [None]
    [kept] = index.find_many([("q", Print((other,)))])
    assert kept is not None and kept.first.event_id == "x1"
    photos = [k for k in keys_under(server, settings.key_prefix) if ":p:" in k or ":c:" in k]
    assert photos == [f"{settings.key_prefix}:p:{kept.photo_id}"]


@needs_redis
def test_a_known_photo_is_read_directly_and_probed_for_when_gone(
    index: NearDuplicateIndex, rng: np.random.Generator
) -> None:
    original = random_hash(rng)
    see(index, "e1", Print((original,)), claim=(1.0, 1.0))
    [probed] = index.find_many([("q1", Print((original,)))])
    assert probed is not None
    [direct] = index.find_many([("q2", Print((original,)))], known=[(probed.photo_id, 0)])
    assert direct is not None and direct.photo_id == probed.photo_id
    assert direct.first.event_id == "e1" and direct.distance == 0
    near = flipped(original, 5, rng)
    see(index, "e2", Print((near,)))  # one more sighting of the same photo
    index.erase_event("e1")  # its first sighting: the photo goes
    see(index, "e3", Print((near,)))  # a new photo of the same picture
    [found] = index.find_many([("q3", Print((original,)))], known=[(probed.photo_id, 0)])
    assert found is not None and found.first.event_id == "e3" and found.distance == 5


@needs_redis
def test_two_consumers_share_the_index(
    server: RedisServer, settings: IndexSettings, rng: np.random.Generator
) -> None:
    one, two = (NearDuplicateIndex.from_url(server.url, settings, 2.0) for _ in range(2))
    a, b = random_hash(rng), random_hash(rng)
    see(one, "e1", Print((a,)))
    see(two, "e2", Print((b,)))
    assert [m and m.first.event_id for m in two.find_many([("q", Print((a,)))])] == ["e1"]
    assert [m and m.first.event_id for m in one.find_many([("q", Print((b,)))])] == ["e2"]
    one.close()
    two.close()


def test_redis_down_raises_index_unavailable(rng: np.random.Generator) -> None:
    index = NearDuplicateIndex.from_url(
        f"redis://127.0.0.1:{closed_port()}/0", IndexSettings(), timeout_s=0.5
    )
    fp = Print((random_hash(rng),))
    with pytest.raises(IndexUnavailableError):
        index.find_many([("e1", fp)])
    with pytest.raises(IndexUnavailableError):
        index.record_many([(fp, sighting("e1"), None)])
    with pytest.raises(IndexUnavailableError):
        index.erase_event("e1")
