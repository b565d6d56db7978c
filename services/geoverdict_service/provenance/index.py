"""The near-duplicate index in Redis: where each photo was seen first, how often, what was claimed.

Shared by every consumer of the group (plain Redis keys, no client state), bounded in time by
`retention_s` and in size by `max_claims`, the same commands on Redis 7.0 and 8.

Lookup is multi-index hashing (Norouzi et al.; Meta's PDQ index does the same): each indexed
256-bit hash is cut into 16 chunks of 16 bits, and the bucket of chunk c with value v holds every
indexed hash whose chunk c is exactly v. A query reads the buckets of its own chunks, so it finds
every indexed hash within distance 15 (pigeonhole) and most farther ones; the candidates' exact
Hamming distances are computed here and only those within `max_distance` count. With `tables`
2, a second cut of the bits in a fixed random order is indexed too, which catches most of what the
first misses, for twice the bucket memory and reads. Index-level recall (a pair at exactly that
distance found, random bit flips, 20,000 pairs each; `python -m benchmarks near-duplicate-index`):

    distance   16     24     31     40     48     56     64
    tables 1   1.000  0.991  0.912  0.664  0.426  0.246  0.131
    tables 2   1.000  1.000  0.992  0.887  0.672  0.434  0.242

Buckets are strings of fixed-size records (the 32-byte hash, then the 8-byte photo id) that grow
by APPEND and are read with one MGET for a whole batch: a sorted set per bucket costs 11 ms of
reply parsing for 256 buckets of 30 members in redis-py against 0.75 ms for the same bytes as
strings. Buckets live in epochs of `retention_s`: a photo's records go to the buckets of the
epoch it is recorded in (again when it is seen in a later epoch), a lookup reads the current and
the previous epoch, and an epoch's buckets expire (EXPIREAT) once all their records are older than
the retention, so buckets never need compacting.

Measured (bench/near-duplicate-index.json; 1,000,000 random photos of 3 hashes, 2 tables,
queries of 3 hashes + 12 variants as a fingerprint's, a shared 2-core machine): lookup p50 5.7
ms, p99 9.8 ms (over the 5 ms target), 2.6 client CPU-ms per lookup, Redis 10,556 bytes per
photo. Through this index with real fingerprints, 2 tables find every kind of repost the
targets name (docs/benchmarks.md, "Near duplicates"); 1 table misses banners and mirrors.

Whether a candidate is still a photo is decided by its photo key, whose TTL restarts at each
sighting: a photo lives `retention_s` after it was last seen.

Keys (all under `key_prefix`, `geoverdict:photo` by default; every one with a TTL):
- `b:<epoch>:<chunk>:<value>`: a bucket (records of 40 bytes);
- `p:<photo>`: the photo: `f` its first sighting (compact JSON: event id, post id, source,
  time, claim), `n` times seen, `pk` a prediction key, `h` its indexed hashes, `r` the last epoch
  its records were written in;
- `c:<photo>`: its last `max_claims` claims, newest first (JSON [lat, lon, time, event id]);
- `e:<digest of the event id>`: "<photo> <digest of the post>": the event was recorded (so a
  replayed batch is recorded once, and never matches itself);
- `s:<digest of source and post id>`: the post's event ids (for erase_post).

What is stored about posts and people (docs/privacy.md): the perceptual hashes of each photo, the
event ids, post ids and sources of its first sighting, the event ids, times and claimed locations
(already floored by the caller) of its last `max_claims` sightings, and, per event and per post,
which photo they showed. No image, no user, no caption. Everything expires `retention_s` after the
photo was last seen, except bucket records (a hash and a random-looking photo id, nothing about a
post), which go at most one epoch later. erase_event and erase_post remove a sighting at once,
bucket records included when the photo goes with it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
import orjson
import redis
from redis.typing import EncodableT, FieldT

from geoverdict_service.exceptions import IndexUnavailableError, InvalidSettingsError
from geoverdict_service.provenance.fingerprints import MATCH_DISTANCE

log = logging.getLogger(__name__)

HASH_BYTES = 32
CHUNK_BITS = 16
CHUNKS = HASH_BYTES * 8 // CHUNK_BITS  # per table
PHOTO_ID_BYTES = 8
RECORD_BYTES = HASH_BYTES + PHOTO_ID_BYTES
MAX_TABLES = 4
CANDIDATES_PER_QUERY = 8  # nearest photos fetched per query (the first valid one is the match)
WATCH_RETRIES = 5

Hashes8 = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.int64]


class Hashes(Protocol):
    """What the index needs of a fingerprint (provenance.fingerprints.Fingerprint has it)."""

    @property
    def hashes(self) -> tuple[bytes, ...]: ...  # indexed and queried, 32 bytes each

    @property
    def variants(self) -> tuple[bytes, ...]: ...  # queried too (mirrors, rotations)

    @property
    def usable(self) -> bool: ...  # low-quality hashes never match and are never indexed


@dataclass(frozen=True)
class Sighting:
    """One event's appearance, as the index keeps it."""

    event_id: str
    post_id: str
    source: str
    seen_at: datetime
    claim: tuple[float, float] | None  # already floored by the caller (the privacy floor)
    prediction_key: str | None = None  # the prediction this photo was answered with (reuse)


@dataclass(frozen=True)
class Match:
    """The earlier photo a query is a near-duplicate of."""

    photo_id: str
    distance: int  # best Hamming distance between any query hash and any indexed hash
    first: Sighting
    times_seen: int  # earlier sightings (this event's own never counts)
    claims: tuple[tuple[float, float, datetime], ...]  # (lat, lon, seen_at), newest first
    prediction_key: str | None


@dataclass(frozen=True)
class IndexSettings:
    """How far a near-duplicate may be, how long and how much the index keeps."""

    max_distance: int = MATCH_DISTANCE  # the fingerprint's, measured
    retention_s: int = 30 * 24 * 3600
    max_claims: int = 10
    key_prefix: str = "geoverdict:photo"  # every key under geoverdict:* (the Redis ACL's pattern)
    tables: int = 2  # cuts of the hash bits indexed (recall against memory: module docstring)

    def __post_init__(self) -> None:
        if not 0 <= self.max_distance < HASH_BYTES * 8:
            raise InvalidSettingsError(f"max_distance must be 0..255, got {self.max_distance}")
        for name in ("retention_s", "max_claims"):
            if getattr(self, name) < 1:
                raise InvalidSettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.tables <= MAX_TABLES:
            raise InvalidSettingsError(f"tables must be 1..{MAX_TABLES}, got {self.tables}")


def as_array(hashes: Iterable[bytes]) -> Hashes8:
    """32-byte hashes as a (n, 32) uint8 array; ValueError on another length."""
    rows = list(hashes)
    if any(len(h) != HASH_BYTES for h in rows):
        raise ValueError(f"hashes must be {HASH_BYTES} bytes each")
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), HASH_BYTES)


def distances(queries: Hashes8, candidates: Hashes8) -> Ints:
    """Hamming distances, (q, 32) against (c, 32) -> (q, c)."""
    a = np.ascontiguousarray(queries).view(np.uint64)  # (q, 4)
    b = np.ascontiguousarray(candidates).view(np.uint64)  # (c, 4)
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=2, dtype=np.int64)


def distance(a: bytes, b: bytes) -> int:
    """Hamming distance of two 32-byte hashes."""
    return int(distances(as_array([a]), as_array([b]))[0, 0])


# Table t > 0 cuts the bits in a fixed random order (seeded: every consumer must agree).
_ORDERS = [np.arange(256)] + [
    np.random.default_rng(seed).permutation(256) for seed in range(1, MAX_TABLES)
]


def chunks(hashes: Hashes8, tables: int) -> npt.NDArray[np.uint16]:
    """The bucket values of each hash: (n, 32) -> (n, tables * 16), chunk k of table t at
    t * 16 + k."""
    bits = np.unpackbits(hashes, axis=1)  # (n, 256)
    cut = [np.packbits(bits[:, _ORDERS[t]], axis=1) for t in range(tables)]
    return np.ascontiguousarray(np.concatenate(cut, axis=1)).view(">u2").astype(np.uint16)


def bucket_key(prefix: str, epoch: int, chunk: int, value: int) -> str:
    """The bucket of chunk number `chunk` (over all tables) with `value` in one epoch."""
    return f"{prefix}:b:{epoch}:{chunk:02x}:{value:04x}"


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def bucket_keys(prefix: str, epoch: int, values: npt.NDArray[np.uint16]) -> list[bytes]:
    """The bucket keys of chunk values (n, chunks), row by row, as bucket_key spells them: built
    as one byte array (a lookup MGETs thousands; an f-string each cost more than the MGET)."""
    head = f"{prefix}:b:{epoch}:".encode()
    n, width = values.shape
    out = np.empty((n, width, len(head) + 7), dtype=np.uint8)
    out[:, :, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    chunk = np.arange(width)
    out[:, :, len(head)] = _HEX[chunk >> 4]
    out[:, :, len(head) + 1] = _HEX[chunk & 15]
    out[:, :, len(head) + 2] = ord(":")
    for digit in range(4):
        out[:, :, len(head) + 3 + digit] = _HEX[(values >> (12 - 4 * digit)) & 15]
    return cast(list[bytes], out.reshape(n * width, -1).view(f"S{out.shape[2]}").ravel().tolist())


# Appends one record to each bucket and sets its expiry, in Redis: one EVALSHA for a batch's
# thousands of buckets instead of two commands each (1.9 client CPU-ms an event in redis-py).
# KEYS: the buckets; ARGV[1]: their expiry (unix seconds); ARGV[2]: the records, RECORD_BYTES
# each, in the order of KEYS.
APPEND_RECORDS = """
local size = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  redis.call('APPEND', key, string.sub(ARGV[2], (i - 1) * size + 1, i * size))
  redis.call('EXPIREAT', key, ARGV[1])
end
return #KEYS
"""


def photo_id_of(event_id: str) -> bytes:
    """A new photo's id, derived from its first event (a replayed batch writes the same keys)."""
    return hashlib.blake2b(event_id.encode(), digest_size=PHOTO_ID_BYTES).digest()


def key_digest(*parts: str) -> str:
    """Bounded, separator-safe key part for ids that come from events."""
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class NearDuplicateIndex:
    """find_many / record_many in two pipelined round trips each; erase_event / erase_post."""

    def __init__(
        self,
        client: redis.Redis,
        settings: IndexSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.settings = settings
        self._clock = clock  # wall time: epochs and TTLs (the event's own time is data)
        self._p = settings.key_prefix
        self._append_records = client.register_script(APPEND_RECORDS)

    @classmethod
    def from_url(cls, url: str, settings: IndexSettings, timeout_s: float) -> NearDuplicateIndex:
        """An index over the Redis at `url` (its user and password in it)."""
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client, settings)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    # --- keys -------------------------------------------------------------------------------

    def epoch(self) -> int:
        """The current epoch of the buckets (epochs last retention_s)."""
        return int(self._clock() // self.settings.retention_s)

    def photo_key(self, photo: str) -> str:
        """The photo's record (the key layout is the module docstring's)."""
        return f"{self._p}:p:{photo}"

    def claims_key(self, photo: str) -> str:
        return f"{self._p}:c:{photo}"

    def event_key(self, event_id: str) -> str:
        return f"{self._p}:e:{key_digest(event_id)}"

    def post_key(self, post: str) -> str:
        """A post's event ids; `post` is key_digest(source, post_id)."""
        return f"{self._p}:s:{post}"

    def _buckets(self, hashes: Hashes8, epoch: int) -> list[bytes]:
        """The bucket keys of each hash in `epoch`, hash by hash."""
        return bucket_keys(self._p, epoch, chunks(hashes, self.settings.tables))

    # --- lookup -----------------------------------------------------------------------------

    def find_many(
        self,
        queries: Sequence[tuple[str, Hashes]],
        known: Sequence[tuple[str, int] | None] | None = None,
    ) -> list[Match | None]:
        """(event id, fingerprint) -> the nearest photo within max_distance seen before this
        event (a photo first seen by this very event, as in a replayed batch, is not earlier),
        or None. `known[i]`, when given, is the photo (id, distance) the same bytes were found
        or recorded as before: read directly, no buckets probed (an exact repost costs one
        photo read), and probed as usual when that photo is gone. IndexUnavailableError when
        Redis fails."""
        epoch = self.epoch()
        wanted = [i for i, (_, fp) in enumerate(queries) if fp.usable and fp.hashes]
        if not wanted:
            return [None] * len(queries)
        hints = {i: hint for i in wanted if known is not None and (hint := known[i]) is not None}
        query_hashes = {
            i: as_array(dict.fromkeys(queries[i][1].hashes + queries[i][1].variants))
            for i in wanted
            if i not in hints
        }
        keys: list[str | bytes] = [self.event_key(queries[i][0]) for i in wanted]
        starts = {}  # where each probed query's buckets begin in the one MGET
        for i, hashes in query_hashes.items():
            starts[i] = len(keys)
            for e in (epoch, epoch - 1):
                keys += self._buckets(hashes, e)
        values = self._call(lambda: self.client.mget(keys))
        recorded = {i: self._recorded_photo(values[k]) for k, i in enumerate(wanted)}
        near: dict[int, list[tuple[int, str]]] = {i: [(d, p)] for i, (p, d) in hints.items()}
        per_hash = self.settings.tables * CHUNKS
        for i, hashes in query_hashes.items():
            n = len(hashes)
            # the buckets of hash h: chunk k of epoch e at start + (e * n + h) * per_hash + k
            blobs = [
                b"".join(
                    dict.fromkeys(
                        value
                        for e in (0, 1)
                        for value in values[
                            starts[i] + (e * n + h) * per_hash : starts[i]
                            + (e * n + h + 1) * per_hash
                        ]
                        if value
                    )
                )
                for h in range(n)
            ]
            near[i] = self._nearest(hashes, blobs)
        photos = sorted({photo for found in near.values() for _, photo in found})
        details = self._photos(photos)
        out: list[Match | None] = [None] * len(queries)
        for i in wanted:
            event_id = queries[i][0]
            for dist, photo in near[i]:
                match = self._match(photo, dist, details.get(photo), event_id, recorded[i] == photo)
                if match is not None:
                    out[i] = match
                    break
        gone = [i for i, (photo, _) in hints.items() if b"f" not in details[photo][0]]
        if gone:  # expired or erased since: what else is near
            for i, match in zip(gone, self.find_many([queries[i] for i in gone]), strict=True):
                out[i] = match
        return out

    def _nearest(self, query: Hashes8, blobs: Sequence[bytes]) -> list[tuple[int, str]]:
        """The nearest photos (distance, id) within max_distance: each query hash against the
        records of its own buckets only (blobs[h], hash h's), not every hash against all."""
        counts = [len(blob) // RECORD_BYTES for blob in blobs]
        if not sum(counts):
            return []
        records = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, RECORD_BYTES)
        owner = np.repeat(np.arange(len(blobs)), counts)
        mine = np.ascontiguousarray(query[owner]).view(np.uint64)  # (c, 4)
        theirs = np.ascontiguousarray(records[:, :HASH_BYTES]).view(np.uint64)
        best = np.bitwise_count(mine ^ theirs).sum(axis=1, dtype=np.int64)  # (c,)
        close = np.flatnonzero(best <= self.settings.max_distance)
        by_photo: dict[str, int] = {}
        for c in close[np.argsort(best[close], kind="stable")]:
            by_photo.setdefault(records[c, HASH_BYTES:].tobytes().hex(), int(best[c]))
        return [(d, p) for p, d in list(by_photo.items())[:CANDIDATES_PER_QUERY]]

    def _photos(self, photos: Sequence[str]) -> dict[str, tuple[dict[bytes, bytes], list[bytes]]]:
        """Each photo's hash fields and newest claims (one pipelined round trip)."""
        if not photos:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for photo in photos:
            pipe.hgetall(self.photo_key(photo))
            pipe.lrange(self.claims_key(photo), 0, self.settings.max_claims)  # one more: ours
        replies = self._call(pipe.execute)
        return {p: (replies[2 * k], replies[2 * k + 1]) for k, p in enumerate(photos)}

    def _match(
        self,
        photo: str,
        dist: int,
        detail: tuple[dict[bytes, bytes], list[bytes]] | None,
        event_id: str,
        recorded_here: bool,
    ) -> Match | None:
        """The match a photo makes for this event, or None when it is no earlier photo: gone
        (expired between reads), or first seen by this event."""
        if detail is None or b"f" not in detail[0]:
            return None
        fields, raw_claims = detail
        first = _sighting(orjson.loads(fields[b"f"]), fields.get(b"pk"))
        if first.event_id == event_id:
            return None
        claims = []
        for raw in raw_claims:
            lat, lon, seen, claimed_by = orjson.loads(raw)
            if claimed_by != event_id:
                claims.append((float(lat), float(lon), _time(seen)))
        return Match(
            photo_id=photo,
            distance=dist,
            first=first,
            times_seen=int(fields.get(b"n", b"1")) - (1 if recorded_here else 0),
            claims=tuple(claims[: self.settings.max_claims]),
            prediction_key=first.prediction_key,
        )

    @staticmethod
    def _recorded_photo(value: bytes | None) -> str | None:
        """The photo an event was recorded to, from its event key's value."""
        return value.split(b" ")[0].decode() if value else None

    # --- recording --------------------------------------------------------------------------

    def record_many(
        self, sightings: Sequence[tuple[Hashes, Sighting, Match | None]]
    ) -> list[str | None]:
        """Add each sighting to its matched photo (times seen + 1, its claim pushed) or as a new
        photo; the photo ids (None for an unusable fingerprint, never indexed). Idempotent per
        event id: a batch replayed after an aborted transaction is counted once. Two round trips,
        the writes in one MULTI/EXEC. IndexUnavailableError when Redis fails."""
        epoch = self.epoch()
        s = self.settings
        usable = [i for i, (fp, _, _) in enumerate(sightings) if fp.usable and fp.hashes]
        if not usable:
            return [None] * len(sightings)
        matched = sorted({m.photo_id for i in usable if (m := sightings[i][2]) is not None})
        pipe = self.client.pipeline(transaction=False)
        pipe.mget([self.event_key(sightings[i][1].event_id) for i in usable])
        for known_photo in matched:
            pipe.hmget(self.photo_key(known_photo), ["r", "h"])
        replies = self._call(pipe.execute)
        done = {
            sightings[i][1].event_id: known
            for i, value in zip(usable, replies[0], strict=True)
            if (known := self._recorded_photo(value)) is not None
        }
        alive = {p: (r, h) for p, (r, h) in zip(matched, replies[1:], strict=True) if h is not None}
        new: dict[str, Hashes8] = {}  # photos created by this batch: their indexed hashes
        refreshed: set[str] = set()
        out: list[str | None] = [None] * len(sightings)
        writes = self.client.pipeline(transaction=True)
        buckets: list[bytes] = []  # where the batch's new bucket records go, and the records
        records: list[bytes] = []
        for i in usable:
            fp, sighting, match = sightings[i]
            if sighting.event_id in done:
                out[i] = done[sighting.event_id]
                continue
            photo = match.photo_id if match is not None and match.photo_id in alive else None
            if photo is None:
                photo = self._in_batch(fp, new)
            if photo is None:
                photo = photo_id_of(sighting.event_id).hex()
                new[photo] = as_array(fp.hashes)
                self._write_photo(writes, photo, new[photo], sighting, epoch)
                self._records(buckets, records, photo, new[photo], epoch)
            else:
                writes.hincrby(self.photo_key(photo), "n", 1)
                if sighting.prediction_key:
                    writes.hsetnx(self.photo_key(photo), "pk", sighting.prediction_key)
                r, h = alive.get(photo, (str(epoch).encode(), b""))
                if int(r or 0) < epoch and photo not in refreshed:  # seen in a new epoch
                    refreshed.add(photo)
                    self._records(buckets, records, photo, as_array(_split(h)), epoch)
                    writes.hset(self.photo_key(photo), "r", epoch)
                writes.expire(self.photo_key(photo), s.retention_s)
            if sighting.claim is not None:
                lat, lon = sighting.claim
                entry = orjson.dumps([lat, lon, sighting.seen_at.timestamp(), sighting.event_id])
                writes.lpush(self.claims_key(photo), entry)
                writes.ltrim(self.claims_key(photo), 0, s.max_claims - 1)
            writes.expire(self.claims_key(photo), s.retention_s)
            post = key_digest(sighting.source, sighting.post_id)
            event_key = self.event_key(sighting.event_id)
            writes.set(event_key, f"{photo} {post}", nx=True, ex=s.retention_s)
            writes.sadd(self.post_key(post), sighting.event_id)
            writes.expire(self.post_key(post), s.retention_s)
            done[sighting.event_id] = photo
            out[i] = photo
        if buckets:
            expire_at = (epoch + 2) * s.retention_s  # once every record in them is too old
            args: list[EncodableT] = [expire_at, b"".join(records), RECORD_BYTES]
            self._append_records(keys=buckets, args=args, client=writes)
        if len(writes):
            self._call(writes.execute)
        return out

    def _in_batch(self, fp: Hashes, new: dict[str, Hashes8]) -> str | None:
        """A photo created earlier in this batch that this one is a near-duplicate of."""
        if not new:
            return None
        query = as_array(dict.fromkeys(fp.hashes + fp.variants))
        best = [(int(distances(query, hashes).min()), photo) for photo, hashes in new.items()]
        dist, photo = min(best)
        return photo if dist <= self.settings.max_distance else None

    def _write_photo(
        self, pipe: Any, photo: str, hashes: Hashes8, sighting: Sighting, epoch: int
    ) -> None:
        pipe.hset(self.photo_key(photo), mapping=self.photo_fields(hashes, sighting, epoch))
        pipe.expire(self.photo_key(photo), self.settings.retention_s)

    @staticmethod
    def photo_fields(hashes: Hashes8, sighting: Sighting, epoch: int) -> dict[FieldT, EncodableT]:
        """A new photo's record, first seen by `sighting`."""
        first = {
            "e": sighting.event_id,
            "p": sighting.post_id,
            "s": sighting.source,
            "t": sighting.seen_at.timestamp(),
            "c": list(sighting.claim) if sighting.claim is not None else None,
        }
        fields: dict[FieldT, EncodableT] = {
            "f": orjson.dumps(first),
            "n": 1,
            "h": hashes.tobytes(),
            "r": epoch,
        }
        if sighting.prediction_key:
            fields["pk"] = sighting.prediction_key
        return fields

    def _records(
        self, buckets: list[bytes], records: list[bytes], photo: str, hashes: Hashes8, epoch: int
    ) -> None:
        """A photo's records (each hash, then the photo id) for its buckets of `epoch`."""
        pid = bytes.fromhex(photo)
        keys = self._buckets(hashes, epoch)
        per_hash = len(keys) // len(hashes)
        buckets += keys
        records += [hashes[k // per_hash].tobytes() + pid for k in range(len(keys))]

    # --- erasure ----------------------------------------------------------------------------

    def erase_event(self, event_id: str) -> int:
        """Forget one event's sighting: its event key, its claim, its count in times_seen, its
        post's link to it. When it was the photo's first or only sighting (the photo's record
        names its post), the whole photo goes: its hashes from the buckets, its claims. Returns
        the sightings erased (0 or 1). IndexUnavailableError when Redis fails."""
        key = self.event_key(event_id)
        value = self._call(lambda: self.client.get(key))
        if value is None:
            return 0
        photo, post = value.decode().split(" ")
        fields, claims = self._photos([photo])[photo]
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.srem(self.post_key(post), event_id)
        first = orjson.loads(fields[b"f"])["e"] if b"f" in fields else None
        if first == event_id or int(fields.get(b"n", b"1")) <= 1:
            pipe.delete(self.photo_key(photo), self.claims_key(photo))
            self._call(pipe.execute)
            self._drop_records(photo, fields.get(b"h", b""))
            return 1
        pipe.hincrby(self.photo_key(photo), "n", -1)
        for raw in claims:  # the whole list: it is capped at max_claims, _photos reads one more
            if orjson.loads(raw)[3] == event_id:
                pipe.lrem(self.claims_key(photo), 0, raw.decode())
        self._call(pipe.execute)
        return 1

    def erase_post(self, source: str, post_id: str) -> int:
        """Forget every sighting of one post (erase_event for each of its events); returns the
        sightings erased."""
        key = self.post_key(key_digest(source, post_id))
        events = self._call(lambda: self.client.smembers(key))
        erased = sum(self.erase_event(event.decode()) for event in sorted(events))
        self._call(lambda: self.client.delete(key))
        return erased

    def _drop_records(self, photo: str, packed: bytes) -> None:
        """Remove a photo's records from its buckets of this epoch and the last (older ones have
        expired), rewriting each bucket unless a consumer appended to it meanwhile (then again)."""
        if not packed:
            return
        hashes = as_array(_split(packed))
        epoch = self.epoch()
        keys = sorted(set(self._buckets(hashes, epoch) + self._buckets(hashes, epoch - 1)))
        pid = np.frombuffer(bytes.fromhex(photo), np.uint8)
        for _ in range(WATCH_RETRIES):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys)
                    values = pipe.mget(keys)
                    pipe.multi()
                    for key, value in zip(keys, values, strict=True):
                        if value:
                            _without(pipe, key, cast(bytes, value), pid)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # a consumer appended to one of them: read them again
                except redis.RedisError as exc:
                    raise IndexUnavailableError(f"near-duplicate index: {exc}") from exc
        raise IndexUnavailableError(f"buckets of photo {photo} kept changing; not rewritten")

    # --- errors -----------------------------------------------------------------------------

    @staticmethod
    def _call(operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except redis.RedisError as exc:
            raise IndexUnavailableError(f"near-duplicate index: {exc}") from exc


def _without(pipe: Any, key: bytes, value: bytes, pid: Hashes8) -> None:
    """Queue the rewrite of one bucket without a photo's records (nothing when it has none)."""
    records = np.frombuffer(value, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    keep = (records[:, HASH_BYTES:] != pid).any(axis=1)
    if keep.all():
        return
    if keep.any():
        pipe.set(key, records[keep].tobytes(), keepttl=True)
    else:
        pipe.delete(key)


def _split(packed: bytes) -> list[bytes]:
    """A photo's `h` field back into its hashes."""
    return [packed[k : k + HASH_BYTES] for k in range(0, len(packed), HASH_BYTES)]


def _sighting(doc: dict[str, Any], prediction_key: bytes | None) -> Sighting:
    claim = doc.get("c")
    return Sighting(
        event_id=doc["e"],
        post_id=doc["p"],
        source=doc["s"],
        seen_at=_time(doc["t"]),
        claim=(float(claim[0]), float(claim[1])) if claim else None,
        prediction_key=prediction_key.decode() if prediction_key else None,
    )
