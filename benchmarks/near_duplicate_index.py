"""The near-duplicate index at scale: lookup latency, client CPU and Redis memory per photo.

A redis-server of its own (the stack's, its ACL users, maxmemory high enough that nothing is
evicted) is bulk-loaded with N random photos: the keys record_many writes for a new photo (the
photo record, a claim, its event and post keys) and its bucket records, appended in a few rounds
so the buckets grow as they do in service. Then single-photo find_many calls, half near-duplicates
of indexed photos (a distance drawn from 5..31) and half random photos, each query carrying its
indexed hashes and `variants` other hashes as a fingerprint's mirrors do; then record_many in
batches. The index-level recall of the lookup scheme (a pair at exactly distance d found, random
bit flips) is computed without Redis for 1 and 2 tables.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.exceptions import BenchError
from geoverdict_service.provenance.index import (
    HASH_BYTES,
    IndexSettings,
    NearDuplicateIndex,
    Sighting,
    bucket_key,
    chunks,
    key_digest,
    photo_id_of,
)
from geoverdict_stack import process
from geoverdict_stack.ports import free_ports
from geoverdict_stack.redis import RedisServer

log = logging.getLogger(__name__)

RECALL_DISTANCES = (16, 20, 24, 28, 31, 36, 40, 48, 56, 64)
PIPELINE = 20_000  # commands per round trip while loading


@dataclass(frozen=True)
class IndexBenchOptions:
    """What to load and measure."""

    photos: int = 1_000_000
    lookups: int = 2_000
    records: int = 2_000
    record_batch: int = 100
    hashes: int = 3  # indexed per photo (a fingerprint's views: 3.2 on average)
    variants: int = 4  # queried besides, per hash (a fingerprint's 7 dihedral + 4 corners)
    tables: int = IndexSettings.tables
    max_distance: int = IndexSettings.max_distance
    rounds: int = 2  # appends per bucket while loading (service: one per record)
    maxmemory_mb: int = 16_000
    seed: int = 0
    out: Path = Path("bench")


@dataclass(frozen=True)
class Print:
    """A random fingerprint."""

    hashes: tuple[bytes, ...]
    variants: tuple[bytes, ...]
    usable: bool = True


def run(options: IndexBenchOptions) -> dict[str, Any]:
    """Load, measure, write bench/near-duplicate-index.json; the results."""
    rng = np.random.default_rng(options.seed)
    result: dict[str, Any] = {"options": {**dataclasses.asdict(options), "out": str(options.out)}}
    result["recall_by_distance"] = index_recall(rng)
    with tempfile.TemporaryDirectory(prefix="bench-index-") as run_dir:
        server = RedisServer(Path(run_dir), free_ports(1)[0], maxmemory_mb=options.maxmemory_mb)
        record, _ = server.start()
        try:
            result.update(measure(server, options, rng))
        finally:
            process.stop(record)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "near-duplicate-index.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def index_recall(rng: np.random.Generator, pairs: int = 20_000) -> dict[str, dict[str, float]]:
    """Share of pairs at exactly distance d that share a bucket, per number of tables."""
    base = rng.integers(0, 256, (pairs, HASH_BYTES), dtype=np.uint8)
    out: dict[str, dict[str, float]] = {}
    for d in RECALL_DISTANCES:
        near = _flipped(base, d, rng)
        out[str(d)] = {
            f"tables_{t}": round(float((chunks(base, t) == chunks(near, t)).any(axis=1).mean()), 4)
            for t in (1, 2)
        }
    return out


def measure(
    server: RedisServer, options: IndexBenchOptions, rng: np.random.Generator
) -> dict[str, Any]:
    """Load the photos, then time lookups and records."""
    settings = IndexSettings(max_distance=options.max_distance, tables=options.tables)
    index = NearDuplicateIndex.from_url(server.url, settings, timeout_s=10.0)
    admin = redis.Redis.from_url(server.url_for("admin"))
    before = int(admin.info("memory")["used_memory"])
    started = time.perf_counter()
    hashes = rng.integers(0, 256, (options.photos, options.hashes, HASH_BYTES), dtype=np.uint8)
    load(index, hashes, options)
    load_s = time.perf_counter() - started
    used = int(admin.info("memory")["used_memory"]) - before
    keys = int(admin.dbsize())
    log.info(
        "loaded %d photos in %.0f s: %.0f bytes each", options.photos, load_s, used / options.photos
    )
    lookups = lookup(index, hashes, options, rng)
    records = record(index, hashes, options, rng)
    index.close()
    admin.close()
    return {
        "load_s": round(load_s, 1),
        "redis_keys": keys,
        "redis_bytes_per_photo": round(used / options.photos),
        **lookups,
        **records,
    }


def load(index: NearDuplicateIndex, hashes: np.ndarray, options: IndexBenchOptions) -> None:
    """What record_many writes for N new photos, half in the last epoch and half in this one."""
    settings = index.settings
    epoch = index.epoch()
    n = len(hashes)
    ids = [photo_id_of(f"bench-{k}") for k in range(n)]
    pipe = index.client.pipeline(transaction=False)
    seen = datetime.now(UTC)
    for k in range(n):
        photo = ids[k].hex()
        sighting = Sighting(f"bench-{k}", f"post-{k}", "bench", seen, (1.0, 2.0), f"pk-{k}")
        fields = index.photo_fields(hashes[k], sighting, epoch - (k % 2 == 0))
        pipe.hset(index.photo_key(photo), mapping=fields)
        pipe.expire(index.photo_key(photo), settings.retention_s)
        pipe.lpush(index.claims_key(photo), json.dumps([1.0, 2.0, seen.timestamp(), f"bench-{k}"]))
        pipe.expire(index.claims_key(photo), settings.retention_s)
        post = key_digest("bench", f"post-{k}")
        pipe.set(index.event_key(f"bench-{k}"), f"{photo} {post}", ex=settings.retention_s)
        pipe.sadd(index.post_key(post), f"bench-{k}")
        pipe.expire(index.post_key(post), settings.retention_s)
        if len(pipe) >= PIPELINE:
            pipe.execute()
    pipe.execute()
    records = np.concatenate(
        [
            hashes,
            np.frombuffer(b"".join(ids), np.uint8).reshape(n, 1, -1).repeat(options.hashes, 1),
        ],
        axis=2,
    ).reshape(n * options.hashes, -1)  # (n * hashes, 40)
    values = chunks(hashes.reshape(-1, HASH_BYTES), settings.tables)  # (n * hashes, chunks)
    photo_epoch = epoch - (np.arange(n).repeat(options.hashes) % 2 == 0)
    keys: set[str] = set()
    for part in np.array_split(np.arange(len(records)), options.rounds):
        for e in (epoch - 1, epoch):
            rows = part[photo_epoch[part] == e]
            for k in range(values.shape[1]):
                order = rows[np.argsort(values[rows, k], kind="stable")]
                uniq, starts = np.unique(values[order, k], return_index=True)
                for value, group in zip(uniq, np.split(order, starts[1:]), strict=True):
                    key = bucket_key(settings.key_prefix, e, k, int(value))
                    pipe.append(key, records[group].tobytes())
                    keys.add(key)
                    if len(pipe) >= PIPELINE:
                        pipe.execute()
        log.info("bucket round done: %d keys", len(keys))
    for key in keys:
        pipe.expireat(key, (int(key.split(":")[3]) + 2) * settings.retention_s)
        if len(pipe) >= PIPELINE:
            pipe.execute()
    pipe.execute()


def lookup(
    index: NearDuplicateIndex,
    hashes: np.ndarray,
    options: IndexBenchOptions,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Single-photo find_many: latency, client CPU, and how many near-duplicates were found."""
    queries: list[tuple[int, Print]] = []
    for q in range(options.lookups):
        variants = tuple(_random(rng, options.variants * options.hashes))
        if q % 2 == 0:
            target = int(rng.integers(len(hashes)))
            d = int(rng.integers(5, 32))
            near = _flipped(hashes[target], d, rng)
            queries.append((target, Print(tuple(h.tobytes() for h in near), variants)))
        else:
            queries.append((-1, Print(tuple(_random(rng, options.hashes)), variants)))
    latencies = []
    found = wrong = 0
    cpu = time.process_time()
    for q, (target, fp) in enumerate(queries):
        start = time.perf_counter()
        [match] = index.find_many([(f"query-{q}", fp)])
        latencies.append(time.perf_counter() - start)
        if match is not None and target >= 0 and match.first.event_id == f"bench-{target}":
            found += 1
        elif match is not None:
            wrong += 1
    cpu_ms = (time.process_time() - cpu) * 1000 / len(queries)
    if wrong:
        raise BenchError(f"{wrong} lookups found a photo they are no near-duplicate of")
    latencies.sort()
    return {
        "lookup_p50_ms": round(1000 * statistics.median(latencies), 3),
        "lookup_p99_ms": round(1000 * latencies[int(0.99 * len(latencies))], 3),
        "lookup_cpu_ms": round(cpu_ms, 3),
        "near_duplicates_found": round(found / (options.lookups // 2 + options.lookups % 2), 4),
    }


def record(
    index: NearDuplicateIndex,
    hashes: np.ndarray,
    options: IndexBenchOptions,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """record_many in consumer-sized batches, after their find_many (half reposts, half new)."""
    now = datetime.now(UTC)
    cpu = 0.0
    done = 0
    while done < options.records:
        batch = []
        for k in range(options.record_batch):
            event = f"record-{done + k}"
            if k % 2 == 0:
                near = _flipped(hashes[int(rng.integers(len(hashes)))], 3, rng)
                fp = Print(tuple(h.tobytes() for h in near), ())
            else:
                fp = Print(tuple(_random(rng, options.hashes)), ())
            batch.append((event, fp))
        matches = index.find_many(batch)
        start = time.process_time()
        index.record_many(
            [
                (fp, Sighting(event, "post", "bench", now, (1.0, 2.0), None), match)
                for (event, fp), match in zip(batch, matches, strict=True)
            ]
        )
        cpu += time.process_time() - start
        done += len(batch)
    return {"record_cpu_ms": round(cpu * 1000 / done, 3)}


def report(result: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    o = result["options"]
    return (
        f"{o['photos']:,} photos ({o['tables']} tables, {o['hashes']} hash(es) + "
        f"{o['variants']} variants per query): lookup p50 {result['lookup_p50_ms']} ms, "
        f"p99 {result['lookup_p99_ms']} ms, {result['lookup_cpu_ms']} CPU-ms; record "
        f"{result['record_cpu_ms']} CPU-ms; {result['redis_bytes_per_photo']} bytes per photo; "
        f"near-duplicates (5..31) found {result['near_duplicates_found']:.1%}; "
        f"loaded in {result['load_s']} s"
    )


def _random(rng: np.random.Generator, n: int) -> list[bytes]:
    return [rng.integers(0, 256, HASH_BYTES, dtype=np.uint8).tobytes() for _ in range(n)]


def _flipped(hashes: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    """Each row of (..., 32) uint8 hashes with d distinct random bits flipped."""
    rows = hashes.reshape(-1, HASH_BYTES)
    bits = np.unpackbits(rows, axis=1)
    flips = np.argsort(rng.random(bits.shape), axis=1)[:, :d]
    np.put_along_axis(bits, flips, np.take_along_axis(bits, flips, axis=1) ^ 1, axis=1)
    return np.packbits(bits, axis=1).reshape(hashes.shape)
