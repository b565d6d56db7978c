"""Recall and false matches measured end to end through the near-duplicate index.

The fingerprint benchmark (near_duplicates) compares every query hash with every indexed hash:
the best the fingerprint allows. The index answers less: it reads only the buckets that share an
exact 16-bit chunk with a query hash (per table), so a pair at distance 54 is found only when some
chunk survived the alteration intact. This module asks the real index, on a redis-server of its
own: every development photo is recorded as the service records a new photo, then each altered
copy is looked up with find_many (found when the match is its original), and each photo is looked
up again under its own event id (any match is another photo: a false match). Once per number of
tables, so the choice of `tables` is measured, not guessed.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from geoverdict_service.provenance.fingerprints import Fingerprint
from geoverdict_service.provenance.index import (
    IndexSettings,
    Match,
    NearDuplicateIndex,
    Sighting,
)
from geoverdict_stack import process
from geoverdict_stack.ports import free_ports
from geoverdict_stack.redis import RedisServer

log = logging.getLogger(__name__)

TABLES = (1, 2, 3, 4)
BATCH = 100  # events per find_many / record_many, as the consumer's batches


def measure(
    names: Sequence[str],
    originals: Sequence[Fingerprint],
    copies: Mapping[str, Sequence[Fingerprint]],
    max_distance: int,
    same_scene: set[frozenset[str]],
    tables: Sequence[int] = TABLES,
) -> list[dict[str, Any]]:
    """One row per number of tables: recall per alteration (copies[alt][i] is a copy of
    originals[i]), false matches among the originals, CPU-ms per lookup."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-index-recall-") as run_dir:
        server = RedisServer(Path(run_dir), free_ports(1)[0], maxmemory_mb=1024)
        record, _ = server.start()
        try:
            admin = redis.Redis.from_url(server.url_for("admin"))
            for count in tables:
                admin.flushdb()
                settings = IndexSettings(max_distance=max_distance, tables=count)
                index = NearDuplicateIndex.from_url(server.url, settings, timeout_s=10.0)
                try:
                    rows.append(_one(index, names, originals, copies, same_scene))
                finally:
                    index.close()
                log.info("through the index, %d tables: %s", count, rows[-1])
            admin.close()
        finally:
            process.stop(record)
    return rows


def _one(
    index: NearDuplicateIndex,
    names: Sequence[str],
    originals: Sequence[Fingerprint],
    copies: Mapping[str, Sequence[Fingerprint]],
    same_scene: set[frozenset[str]],
) -> dict[str, Any]:
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, len(names), BATCH):
        index.record_many(
            [
                (originals[i], Sighting(names[i], names[i], "bench", seen, None), None)
                for i in range(start, min(start + BATCH, len(names)))
            ]
        )
    recall = {}
    cpu = 0.0
    lookups = 0
    for alteration, prints in copies.items():
        queries = [(f"{alteration}/{names[i]}", fp) for i, fp in enumerate(prints)]
        started = time.process_time()
        found = _find(index, queries)
        cpu += time.process_time() - started
        lookups += len(queries)
        hits = sum(1 for i, m in enumerate(found) if m is not None and m.first.event_id == names[i])
        recall[alteration] = round(100 * hits / max(1, len(prints)), 1)
    own = _find(index, list(zip(names, originals, strict=True)))
    false = [
        {"query": names[i], "match": m.first.event_id, "distance": m.distance}
        for i, m in enumerate(own)
        if m is not None and frozenset({names[i], m.first.event_id}) not in same_scene
    ]
    return {
        "tables": index.settings.tables,
        "max_distance": index.settings.max_distance,
        "recall_pct": recall,
        "false_matches": len(false),
        "false_match_examples": false[:5],
        "client_cpu_ms_per_lookup": round(1000 * cpu / max(1, lookups), 2),
    }


def _find(
    index: NearDuplicateIndex, queries: Sequence[tuple[str, Fingerprint]]
) -> list[Match | None]:
    out: list[Match | None] = []
    for start in range(0, len(queries), BATCH):
        out += index.find_many(queries[start : start + BATCH])
    return out
