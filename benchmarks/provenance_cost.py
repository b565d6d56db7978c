"""What provenance adds to each event in the consumer's CPU, cold and cached, and in Redis memory.

The consumer's own stage (pipeline/provenance.py, `Sightings`) runs as in service, on a
redis-server of its own signed in as the consumer's ACL user: examine (fingerprint, C2PA
pre-scan, EXIF capture time, the index lookup), report (the verdict's provenance object) and
record (the sighting written to the index), in batches as the consumer polls them. The index is
first loaded with the development photos not measured, so lookups read real buckets.

- cold: photos never seen (decoded, fingerprinted, the buckets probed, a new photo recorded);
- cached: the same bytes again under new event ids, as an exact repost (the fingerprint and the
  credentials from the process's memory, the photo read directly, one more sighting recorded).

CPU is this process's (time.process_time) per event; Redis's own CPU is not counted. Redis
memory per photo is used_memory over the photos recorded (keys of the cache's fingerprints
included). The lookup's latency with 1,000,000 photos indexed is the near-duplicate-index
benchmark's (bench/near-duplicate-index.json), reported beside.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from benchmarks.exceptions import BenchError
from geoverdict_service.cache import PredictionCache
from geoverdict_service.events import make_event
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.intake import Intake
from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.provenance import SightingRules, Sightings
from geoverdict_service.provenance.credentials import CredentialReader
from geoverdict_service.provenance.fingerprints import MATCH_DISTANCE
from geoverdict_service.provenance.index import IndexSettings, NearDuplicateIndex
from geoverdict_service.provenance.report import ProvenancePolicy
from geoverdict_stack import process
from geoverdict_stack.ports import free_ports
from geoverdict_stack.redis import RedisServer

log = logging.getLogger(__name__)

TARGET_COLD_MS = 1.0
TARGET_CACHED_MS = 0.2
TOPIC = "bench.images"


@dataclass(frozen=True)
class CostOptions:
    """How many photos are measured and loaded, in what batches."""

    measured: int = 400
    loaded: int = 1_500
    batch: int = 100
    tables: int = IndexSettings.tables


def run(photos: Sequence[bytes], options: CostOptions = CostOptions()) -> dict[str, Any]:
    """CPU-ms per event (cold, cached; each part), Redis bytes per photo."""
    measured = list(photos[: options.measured])
    loaded = list(photos[options.measured : options.measured + options.loaded])
    if not measured:
        raise BenchError("no photos to measure")
    with tempfile.TemporaryDirectory(prefix="bench-provenance-") as run_dir:
        server = RedisServer(Path(run_dir), free_ports(1)[0], maxmemory_mb=2048)
        record, _ = server.start()
        try:
            return _measure(server, measured, loaded, options)
        finally:
            process.stop(record)


def _measure(
    server: RedisServer, measured: list[bytes], loaded: list[bytes], options: CostOptions
) -> dict[str, Any]:
    admin = redis.Redis.from_url(server.url_for("admin"))
    stage = _stage(server.url, options.tables)
    _run(stage, loaded, "load", options.batch)
    before = int(admin.info("memory")["used_memory"])
    cold = _run(stage, measured, "cold", options.batch)
    used = int(admin.info("memory")["used_memory"]) - before
    cached = _run(stage, measured, "cached", options.batch)
    admin.close()
    stage.close()
    result = {
        "photos_measured": len(measured),
        "photos_indexed_before": len(loaded),
        "tables": options.tables,
        "batch": options.batch,
        "cold_cpu_ms_per_event": cold,
        "cached_cpu_ms_per_event": cached,
        "target_cold_ms": TARGET_COLD_MS,
        "target_cached_ms": TARGET_CACHED_MS,
        "redis_bytes_per_photo": round(used / len(measured)),
    }
    index_bench = Path("bench") / "near-duplicate-index.json"
    if index_bench.is_file():
        at_scale = json.loads(index_bench.read_text())
        result["at_1m"] = {
            k: at_scale.get(k)
            for k in ("lookup_p50_ms", "lookup_p99_ms", "redis_bytes_per_photo", "options")
        }
    return result


def _stage(redis_url: str, tables: int) -> Sightings:
    settings = IndexSettings(max_distance=MATCH_DISTANCE, tables=tables)
    return Sightings(
        SightingRules(ProvenancePolicy(min_precision_km=5.0), MATCH_DISTANCE, -1),
        Metrics(),
        index=NearDuplicateIndex.from_url(redis_url, settings, timeout_s=5.0),
        reader=CredentialReader(),
        cache=PredictionCache(redis_url, 3600),
    )


def _run(stage: Sightings, photos: list[bytes], label: str, batch: int) -> dict[str, float]:
    """Every photo through the stage in batches; CPU-ms per event of each step."""
    intake = Intake(lambda url: b"", 1.0, Metrics())
    spent = {"examine": 0.0, "report": 0.0, "record": 0.0}
    for start in range(0, len(photos), batch):
        items = intake.read({TopicPartition(TOPIC, 0): _records(photos[start : start + batch])})
        t0 = time.process_time()
        stage.examine(items)
        t1 = time.process_time()
        stage.report(items)
        t2 = time.process_time()
        for item in items:
            item.payload = b"{}"  # answered: recorded
        stage.record(items)
        t3 = time.process_time()
        spent["examine"] += t1 - t0
        spent["report"] += t2 - t1
        spent["record"] += t3 - t2
        _check(items, label)
    intake.close()
    out = {k: round(1000 * v / len(photos), 3) for k, v in spent.items()}
    out["total"] = round(sum(out.values()), 3)
    log.info("provenance %s: %s CPU-ms per event", label, out)
    return out


def _records(photos: Sequence[bytes]) -> list[ConsumerRecord]:
    out = []
    for offset, photo in enumerate(photos):
        value = json.dumps(make_event(f"post-{offset}", image_bytes=photo)).encode()
        out.append(
            ConsumerRecord(TOPIC, 0, -1, offset, 0, 0, None, value, [], None, 0, len(value), 0)
        )
    return out


def _check(items: list[Item], label: str) -> None:
    """The stage did its work (a cost of a stage that did nothing is no cost)."""
    for item in items:
        if item.provenance is None or item.provenance["index"] not in ("ok", "unusable"):
            raise BenchError(f"provenance {label}: {item.event_id} not examined")
        again = label == "cached" and item.provenance["index"] == "ok"
        if again and item.provenance["near_duplicate"] is None:
            raise BenchError(f"provenance cached: {item.event_id} found no earlier sighting")


BEGIN, END = "<!-- provenance-cost:begin -->", "<!-- provenance-cost:end -->"


def write(result: dict[str, Any], out: Path, docs: Path | None) -> None:
    """bench/provenance-cost.json, and its lines into `docs` between the markers."""
    from benchmarks.report import write_block  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    (out / "provenance-cost.json").write_text(json.dumps(result, indent=2) + "\n")
    if docs is not None:
        write_block(docs, BEGIN, END, f"```\n{report(result)}\n```")


def report(result: dict[str, Any]) -> str:
    """Plain lines for people."""
    cold, cached = result["cold_cpu_ms_per_event"], result["cached_cpu_ms_per_event"]
    lines = [
        f"provenance, CPU-ms per event added ({result['photos_measured']} photos, "
        f"{result['tables']} tables, batches of {result['batch']}):",
        f"  cold   {cold['total']:.2f} (target {TARGET_COLD_MS}): examine {cold['examine']}, "
        f"report {cold['report']}, record {cold['record']}",
        f"  cached {cached['total']:.2f} (target {TARGET_CACHED_MS}): examine "
        f"{cached['examine']}, report {cached['report']}, record {cached['record']}",
        f"  Redis {result['redis_bytes_per_photo']:,} bytes per photo",
    ]
    at_1m = result.get("at_1m")
    if at_1m:
        lines.append(
            f"  at 1,000,000 photos (near-duplicate-index bench): lookup p50 "
            f"{at_1m['lookup_p50_ms']} ms, p99 {at_1m['lookup_p99_ms']} ms, "
            f"{at_1m['redis_bytes_per_photo']:,} bytes per photo"
        )
    return "\n".join(lines)
