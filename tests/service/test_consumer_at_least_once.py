"""The consumer's commit rules on fakes: what is committed when, what is sent, what is asked.

The same rules run against the real servers in test_consumer*.py; here each is one batch,
in milliseconds, so a broken rule shows by name.
"""

from __future__ import annotations

import base64
import json

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from geoverdict_service.cache import KEY_PREFIX, cache_key
from geoverdict_service.events import make_event
from geoverdict_service.exceptions import BadImageError, ServiceError
from tests.service import samples
from tests.service.conftest import jpeg
from tests.service.fakes import (
    DEAD,
    INPUT,
    VERDICTS,
    BrokenCache,
    FakeCache,
    FakeConsumer,
    FakeInference,
    FakeProducer,
    build,
    city_for,
    step,
)


def event(image: bytes, post: str = "post") -> bytes:
    return json.dumps(make_event(post, image_bytes=image)).encode()


def tp(partition: int) -> TopicPartition:
    return TopicPartition(INPUT, partition)


def cached(cache: FakeCache, image: bytes) -> None:
    """Put the image's prediction in the cache, as an earlier batch would have."""
    import hashlib

    key = cache_key(samples.MODEL_VERSION, hashlib.sha256(image).hexdigest())
    cache.store[key] = city_for(image)


def test_an_outage_mid_batch_commits_up_to_the_first_owed_record_of_each_partition() -> None:
    consumer, cache = FakeConsumer(partitions=2), FakeCache()
    a, b, c, d, e, f = (jpeg(i) for i in range(6))
    for image in (a, b, c, d):
        consumer.append(0, event(image))
    for image in (e, f):
        consumer.append(1, event(image))
    for image in (a, b, d, e, f):  # everything but c is answered from the cache
        cached(cache, image)
    service, parts = build(consumer=consumer, cache=cache)
    parts.inference.unavailable = True

    step(service, parts)

    # Partition 0 stops at c (offset 2): d is cached but comes after the owed record.
    assert consumer.committed == {tp(0): 2, tp(1): 2}
    assert len(parts.producer.on(VERDICTS)) == 4
    assert consumer.positions[tp(0)] == 2  # sought back to c
    assert consumer.paused() == {tp(0), tp(1)}
    assert parts.producer.on(DEAD) == []  # an outage is never the event's fault

    parts.inference.unavailable = False
    service.pauser.maybe_resume(now=service.pauser.resume_at)  # the backoff has passed
    step(service, parts)
    assert consumer.committed == {tp(0): 4, tp(1): 2}
    assert len(parts.producer.on(VERDICTS)) == 6


def test_a_produce_kafka_does_not_acknowledge_commits_nothing() -> None:
    consumer = FakeConsumer(partitions=1)
    for i in range(3):
        consumer.append(0, event(jpeg(i)))
    producer = FakeProducer(fail_all=KafkaTimeoutError("no acks"))
    service, parts = build(consumer=consumer, producer=producer)
    with pytest.raises(ServiceError, match="did not acknowledge"):
        step(service, parts)
    assert consumer.committed == {}


def test_the_same_photo_twice_in_a_batch_is_inferred_once() -> None:
    consumer = FakeConsumer(partitions=1)
    for post in ("one", "two", "three"):
        consumer.append(0, event(jpeg(7), post))
    service, parts = build(consumer=consumer)
    step(service, parts)
    assert len(parts.inference.requests) == 1
    verdicts = [json.loads(s.value or b"") for s in parts.producer.on(VERDICTS)]
    assert sorted(v["post_id"] for v in verdicts) == ["one", "three", "two"]


def test_a_cache_that_raises_is_a_miss_and_verdicts_still_flow() -> None:
    consumer = FakeConsumer(partitions=1)
    consumer.append(0, event(jpeg(1)))
    service, parts = build(consumer=consumer, cache=BrokenCache())
    step(service, parts)
    assert len(parts.inference.requests) == 1
    assert len(parts.producer.on(VERDICTS)) == 1
    assert consumer.committed == {tp(0): 1}
    errors = parts.metrics.registry.get_sample_value(
        "geoverdict_cache_errors_total", {"operation": "get"}
    )
    assert errors == 1


@pytest.mark.parametrize(
    "entry",
    [{}, {"model_version": samples.MODEL_VERSION, "error": {"code": "empty", "message": "x"}}],
    ids=["empty object", "an error reply"],
)
def test_a_cache_entry_breaking_the_contract_is_a_miss_not_a_crash(entry: object) -> None:
    consumer, cache = FakeConsumer(partitions=1), FakeCache()
    image = jpeg(3)
    consumer.append(0, event(image))
    import hashlib

    cache.store[cache_key(samples.MODEL_VERSION, hashlib.sha256(image).hexdigest())] = entry
    service, parts = build(consumer=consumer, cache=cache)
    step(service, parts)
    (sent,) = parts.producer.on(VERDICTS)
    assert json.loads(sent.value or b"")["cache_hit"] is False
    assert len(parts.inference.requests) == 1
    invalid = parts.metrics.registry.get_sample_value(
        "geoverdict_cache_errors_total", {"operation": "invalid"}
    )
    assert invalid == 1


def test_a_cache_entry_of_another_model_version_is_not_used() -> None:
    consumer, cache = FakeConsumer(partitions=1), FakeCache()
    image = jpeg(4)
    consumer.append(0, event(image))
    import hashlib

    forged = city_for(image) | {"model_version": "someone-else"}
    cache.store[cache_key(samples.MODEL_VERSION, hashlib.sha256(image).hexdigest())] = forged
    service, parts = build(consumer=consumer, cache=cache)
    step(service, parts)
    (sent,) = parts.producer.on(VERDICTS)
    assert json.loads(sent.value or b"")["model_version"] == samples.MODEL_VERSION


def test_stopping_commits_what_was_acknowledged_and_closes_every_part() -> None:
    consumer = FakeConsumer(partitions=1)
    consumer.append(0, event(jpeg(1)))
    service, parts = build(consumer=consumer)
    step(service, parts)
    consumer.committed.clear()  # as if the async commit had not reached the broker
    service.close()
    assert consumer.committed == {tp(0): 1}
    assert consumer.closed


def test_nothing_cached_or_published_is_finer_than_the_privacy_floor() -> None:
    from geoverdict_service.geo import coarsen

    exact = (48.858089722, 2.294571111)  # a photo's GPS EXIF, to the metre

    def with_exif(image: bytes) -> dict[str, object]:
        return dict(samples.prediction([(samples.PARIS, 0.9), (samples.TOKYO, 0.1)], exif=exact))

    consumer = FakeConsumer(partitions=1)
    consumer.append(0, event(jpeg(11)))
    service, parts = build(consumer=consumer, inference=FakeInference(with_exif))
    assert service.settings.min_precision_km == 5.0  # the default
    step(service, parts)
    (cached,) = (v for k, v in parts.cache.store.items() if k.startswith(KEY_PREFIX))
    assert (cached["exif_location"]["lat"], cached["exif_location"]["lon"]) == coarsen(*exact, 5.0)
    (sent,) = parts.producer.on(VERDICTS)
    check = json.loads(sent.value or b"")["consistency"][0]
    assert (check["lat"], check["lon"]) == coarsen(*exact, 5.0)
    assert check["distance_km"] % 5.0 == 0


def test_a_dead_letter_can_keep_a_reference_and_a_hash_instead_of_the_image() -> None:
    import hashlib

    image = b"\x89PNG not really"
    consumer = FakeConsumer(partitions=1)
    consumer.append(0, event(image))

    def refuse(data: bytes) -> dict[str, object]:
        raise BadImageError("not an image", "undecodable", samples.MODEL_VERSION)

    service, parts = build(
        consumer=consumer, inference=FakeInference(refuse), dead_letter_payload="reference"
    )
    step(service, parts)
    (letter,) = parts.producer.on(DEAD)
    assert letter.header["reason"] == "image_undecodable"
    assert letter.header["payload"] == "reference"
    body = json.loads(letter.value or b"")
    assert base64.b64encode(image).decode() not in (letter.value or b"").decode()
    assert body["event"]["image"] == {
        "sha256": hashlib.sha256(image).hexdigest(),
        "size": len(image),
    }
    assert body["original_offset"] == 0


def test_a_popular_photo_is_answered_from_the_process_without_asking_redis_again() -> None:
    class CountingCache(FakeCache):
        asked = 0

        def get_many(self, keys: object) -> list[object]:
            # predictions only: a photo's fingerprint is kept by SHA-256 beside them
            self.asked += any(str(k).startswith(KEY_PREFIX) for k in keys)  # type: ignore[attr-defined]
            return super().get_many(keys)  # type: ignore[arg-type]

    consumer, cache = FakeConsumer(partitions=1), CountingCache()
    consumer.append(0, event(jpeg(21)))
    service, parts = build(consumer=consumer, cache=cache)
    step(service, parts)  # inferred, stored
    consumer.append(0, event(jpeg(21), "again"))
    step(service, parts)
    assert len(parts.inference.requests) == 1
    assert cache.asked == 1  # the second lookup never reached Redis
    assert json.loads(parts.producer.on(VERDICTS)[-1].value or b"")["cache_hit"] == "exact"
