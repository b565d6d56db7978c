"""Delivery: verdicts and dead letters produced, acknowledged, counted; too large: a reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka.errors import KafkaError, KafkaTimeoutError

from geoverdict_service.events import make_event, parse_event
from geoverdict_service.exceptions import BadEventError, ServiceError
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.delivery import Delivery
from geoverdict_service.pipeline.items import Item
from geoverdict_service.verdicts import VerdictPolicy, build_verdict
from tests.service import samples
from tests.service.conftest import jpeg
from tests.service.fakes import DEAD, VERDICTS, FakeProducer, item, settings

LIMIT = 64 * 1024
BUENOS_AIRES = (-34.6037, -58.3816)  # a claim the model (sure of Paris) contradicts


def answered(offset: int, claim: tuple[float, float] | None = None, padding: int = 0) -> Item:
    """An item with its verdict built and encoded, as the consumer hands it to delivery."""
    answer = item(0, offset, jpeg(offset))
    answer.event = parse_event(
        json.dumps(make_event(f"post-{offset}", image_bytes=b"x", claim=claim)).encode()
    )
    answer.prediction = samples.confident_paris()
    answer.verdict = build_verdict(
        answer.event,
        answer.prediction,
        VerdictPolicy(),
        None,
        cache_hit=False,
        image_sha256=answer.sha256,
        timings_ms={"pad": "x" * padding},
        provenance=samples.provenance(),
    )
    answer.key = answer.event.id.encode()
    answer.payload = json.dumps(answer.verdict).encode()
    return answer


def failed(offset: int, value: bytes = b"{not json") -> Item:
    letter = item(0, offset)
    letter.record = letter.record._replace(value=value)
    letter.fail(BadEventError("not JSON", "invalid_json"))
    return letter


def delivery(producer: FakeProducer, metrics: Metrics | None = None, **overrides: Any) -> Delivery:
    return Delivery(producer, metrics or Metrics(), settings(**overrides))


def sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_verdicts_and_dead_letters_go_to_their_topics_and_are_counted() -> None:
    producer, metrics = FakeProducer(), Metrics()
    sender = delivery(producer, metrics)
    delivered = sender.deliver([answered(0, claim=BUENOS_AIRES), failed(1), answered(2)])
    assert sample(metrics, "geoverdict_verdicts_produced_total", {"cache": "miss"}) == 0
    sender.count(delivered)  # once committed
    assert [json.loads(s.value or b"")["post_id"] for s in producer.on(VERDICTS)] == [
        "post-0",
        "post-2",
    ]
    (letter,) = producer.on(DEAD)
    assert (letter.header["reason"], letter.header["original_offset"]) == ("invalid_json", "1")
    assert sample(metrics, "geoverdict_verdicts_produced_total", {"cache": "miss"}) == 2
    assert sample(metrics, "geoverdict_dead_letters_total", {"reason": "invalid_json"}) == 1
    assert sample(metrics, "geoverdict_scene_verdicts_total", {"scene": "urban"}) == 2
    assert sample(metrics, "geoverdict_location_mismatches_total", {"claim_source": "event"}) == 1


def test_a_verdict_that_would_exceed_the_brokers_limit_is_dead_lettered_as_a_reference() -> None:
    producer = FakeProducer(max_request_size=LIMIT)
    big = answered(0, padding=LIMIT)
    delivery(producer, kafka={"max_message_bytes": LIMIT}).deliver([big])
    assert producer.on(VERDICTS) == []
    (letter,) = producer.on(DEAD)
    assert (letter.header["reason"], letter.header["original_reason"]) == ("too_large", "verdict")
    assert letter.header["event_id"] == big.event_id


def test_a_broker_with_a_lower_limit_than_ours_gets_a_reference_after_refusing_the_copy() -> None:
    producer, metrics = FakeProducer(broker_limit=LIMIT), Metrics()
    sender = delivery(producer, metrics)
    sender.count(sender.deliver([failed(0, b"[" * (2 * LIMIT))]))
    (letter,) = producer.on(DEAD)
    assert (letter.header["reason"], letter.header["original_reason"]) == (
        "too_large",
        "invalid_json",
    )
    assert sample(metrics, "geoverdict_dead_letters_total", {"reason": "too_large"}) == 1
    assert sample(metrics, "geoverdict_dead_letters_total", {"reason": "invalid_json"}) == 0


def test_a_broker_refusing_even_the_reference_stops_the_batch() -> None:
    producer = FakeProducer(broker_limit=16)  # smaller than any dead letter or reference
    with pytest.raises(ServiceError, match="refused even the reference"):
        delivery(producer).deliver([failed(0)])


@pytest.mark.parametrize("error", [KafkaTimeoutError("no acks"), KafkaError("leader gone")])
def test_an_answer_kafka_does_not_acknowledge_raises_and_counts_nothing(error: KafkaError) -> None:
    producer, metrics = FakeProducer(fail_all=error), Metrics()
    with pytest.raises(ServiceError, match="did not acknowledge"):
        delivery(producer, metrics).deliver([answered(0)])
    assert sample(metrics, "geoverdict_verdicts_produced_total", {"cache": "miss"}) == 0


def test_a_send_kafka_does_not_take_raises() -> None:
    class Refusing(FakeProducer):
        def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> Any:
            raise KafkaTimeoutError("buffer full")

    with pytest.raises(ServiceError, match="did not take a verdict"):
        delivery(Refusing()).deliver([answered(0)])


def test_dead_letters_can_keep_a_reference_instead_of_the_event() -> None:
    producer = FakeProducer()
    delivery(producer, dead_letter_payload="reference").deliver([failed(0)])
    (letter,) = producer.on(DEAD)
    assert letter.header["payload"] == "reference"
    assert letter.header["reason"] == "invalid_json"
