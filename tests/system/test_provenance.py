"""Provenance end to end on the local stack: two `geoverdict consume` processes of one group,
the near-duplicate index in a redis-server of this test's own (killed midway), every verdict
read by kcat as a subscriber reads them (read_committed).

Photo P is posted claiming Kyiv; then altered copies of P (re-encoded, bannered, bordered,
captioned, mirrored) claiming Lisbon, 3,400 km away, on the other partition, so the other
consumer answers them; then distinct photos. Every copy must name P's event, list Kyiv among
the earlier claims and be a recycled claim; no distinct photo may match. Then Redis is killed
while photos are being posted: the verdicts go on (those after the kill marked `unavailable`),
and every event is answered exactly once."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer
from PIL import Image

from benchmarks.near_duplicates import ALTERATIONS
from benchmarks.topics import Topics
from geoverdict_common.distances import haversine_km
from geoverdict_service.events import make_event
from geoverdict_stack import process
from geoverdict_stack.ports import free_ports
from geoverdict_stack.redis import RedisServer
from tests.system.answers import count_answers, read_values
from tests.system.consumers import ConsumerProcess, GroupView, consumer_environment
from tests.system.exactly_once import TRANSACTIONAL_ID_PREFIX, Target

pytestmark = [pytest.mark.integration]

KYIV, LISBON = (50.4501, 30.5234), (38.7223, -9.1393)
COPIES = ("jpeg_q50", "half_size", "banner_15pct", "border_white", "caption_bar", "mirror")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[RedisServer, Callable[[], None]]]:
    """A redis-server of this test's own, and how to kill it (SIGKILL)."""
    server = RedisServer(tmp_path / "redis", free_ports(1)[0])
    record, _ = server.start()

    def kill() -> None:
        proc = record.process()
        if proc is not None:
            proc.kill()
            proc.wait(10)

    yield server, kill
    process.stop(record)


def dev_photos(shared_data: Path, count: int) -> list[Image.Image]:
    paths = sorted((shared_data / "im2gps3k-dev" / "images").glob("*.jpg"))[:count]
    return [Image.open(path).convert("RGB") for path in paths]


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def wait_verdicts(bootstrap: str, topic: str, ids: set[str], timeout_s: float = 120.0) -> dict:  # type: ignore[type-arg]
    """The verdicts of `ids`, read_committed, once all are there."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = {key: json.loads(value) for key, value in read_values(bootstrap, topic)}
        if ids <= rows.keys() or time.monotonic() > deadline:
            return {k: v for k, v in rows.items() if k in ids}
        time.sleep(1.0)


def test_reposts_name_the_first_post_across_consumers_and_redis_dying_loses_nothing(
    target: Target, shared_data: Path, redis_server: tuple[RedisServer, Callable[[], None]]
) -> None:
    redis, kill_redis = redis_server
    topics = Topics.create(target.bootstrap, partitions=2, prefix="prov")
    env = consumer_environment(
        topics,
        target.model,
        "exactly_once",
        max_poll_records="8",
        transactional_id_prefix=TRANSACTIONAL_ID_PREFIX,
        redis_url=redis.url,
        **target.settings,
    )
    consumers = [ConsumerProcess(env, target.logs / topics.group / f"prov-{k}.log") for k in (1, 2)]
    group = GroupView(topics)
    producer = KafkaProducer(bootstrap_servers=target.bootstrap)
    published: list[str] = []

    def publish(photo: bytes, post: str, claim: tuple[float, float], partition: int) -> str:
        event = make_event(post, image_bytes=photo, claim=claim, source="tests/provenance")
        producer.send(topics.input, json.dumps(event).encode(), partition=partition)
        producer.flush()
        published.append(str(event["id"]))
        return str(event["id"])

    try:
        group.wait_members(2, timeout_s=90)  # one partition each: 0 and 1 answered apart
        original, *others = dev_photos(shared_data, 6)
        first = publish(jpeg(original), "original", KYIV, partition=0)
        assert wait_verdicts(topics.bootstrap, topics.verdicts, {first}).get(first)

        rng = np.random.default_rng(0)
        copies = {
            publish(ALTERATIONS[name][0](original, rng), name, LISBON, partition=1): name
            for name in COPIES
        }
        distinct = {
            publish(jpeg(photo), f"distinct-{k}", LISBON, partition=k % 2)
            for k, photo in enumerate(others[:3])
        }
        answers = wait_verdicts(topics.bootstrap, topics.verdicts, set(copies) | distinct)
        for event_id, name in copies.items():
            provenance = answers[event_id]["provenance"]
            assert provenance["index"] == "ok", name
            near = provenance["near_duplicate"]
            assert near is not None and near["event_id"] == first, (name, near)
            assert near["distance"] <= 54
            earlier = provenance["earlier_claims"]
            kyiv = [c for c in earlier if haversine_km(*KYIV, c["lat"], c["lon"]) < 10]
            assert kyiv and kyiv[0]["distance_km"] > 3000, (name, earlier)
            assert provenance["recycled_claim"] is True, name
        for event_id in distinct:
            assert answers[event_id]["provenance"]["near_duplicate"] is None
        # The copies' consumer is not the original's: the index is the group's, not a process's.
        members = group.members()
        assert sorted(map(sorted, members.values())) == [[0], [1]]

        # Redis dies with events in flight: some answered before, the rest after.
        photos = [original, *others]
        flowing = {
            publish(jpeg(photo.rotate(90, expand=True)), f"during-{k}", LISBON, k % 2)
            for k, photo in enumerate(photos)
        }
        kill_redis()
        after = {
            publish(jpeg(photo.rotate(180)), f"after-{k}", LISBON, partition=k % 2)
            for k, photo in enumerate(photos)
        }
        late = wait_verdicts(topics.bootstrap, topics.verdicts, flowing | after)
        assert len(late) == len(flowing | after)
        assert {late[i]["provenance"]["index"] for i in flowing} <= {"ok", "unavailable"}
        assert {late[i]["provenance"]["index"] for i in after} == {"unavailable"}

        counts = count_answers(topics.bootstrap, [topics.verdicts, topics.dead], published)
        assert counts.reader == "kcat"
        assert (counts.missing, counts.duplicates, counts.unexpected) == (0, 0, 0), counts
        assert counts.by_topic[topics.dead] == 0
    finally:
        producer.close()
        for consumer in consumers:
            consumer.stop()
        group.close()
