"""The KRaft storage format step (Kafka's own tool, the real jars)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from geoverdict_stack import kafka
from geoverdict_stack.ports import free_ports
from geoverdict_stack.stack import Stack


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 encodes to '-' in URL-safe base64: about 1 random id in 64 starts that way.
    draws: Iterator[uuid.UUID] = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(int=1)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka.new_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22


@pytest.mark.integration
def test_storage_formats_whatever_the_cluster_id_starts_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kafka's tool once read a leading '-' as an option: the id must travel as --cluster-id=ID.
    monkeypatch.setattr(kafka, "new_cluster_id", lambda: "-" + "A" * 21)
    port, controller_port = free_ports(2)
    server = kafka.KafkaServer(tmp_path, port, controller_port)
    server.home.mkdir(parents=True)
    server.prepare()
    meta = (server.data_dir / "meta.properties").read_text()
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in meta


@pytest.mark.integration
def test_every_partition_takes_a_write_as_soon_as_its_topic_is_created(stack: Stack) -> None:
    topic = f"fresh-{uuid.uuid4().hex[:8]}"
    # No retries: a partition without a leader yet would fail its send. The producer is
    # connected before the topic exists, as a long-running one would be.
    producer = KafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", retries=0, linger_ms=5
    )
    try:
        kafka.create_topics(stack.kafka_bootstrap, {topic: 4})
        sent = [producer.send(topic, bytes(40_000), partition=i % 4) for i in range(40)]
        offsets = [future.get(timeout=30).offset for future in sent]
    finally:
        producer.close()
    assert sorted(offsets) == sorted(list(range(10)) * 4)


class _HalfLedAdmin:
    """Metadata as Kafka gives it while a new topic's leaders are being elected."""

    def describe_topics(self, names: list[str]) -> list[dict[str, object]]:
        partitions = [
            {"partition": p, "error_code": 0, "leader": 1 if p < 2 else -1} for p in range(4)
        ]
        return [{"topic": name, "error_code": 0, "partitions": partitions} for name in names]


def test_a_topic_whose_leaders_never_come_is_an_error_saying_how_far_it_got() -> None:
    with pytest.raises(kafka.KafkaError, match="images: 2 of 4 partitions have a leader"):
        kafka._wait_for_leaders(_HalfLedAdmin(), "127.0.0.1:1", ["images"], deadline=0.0)  # type: ignore[arg-type]
