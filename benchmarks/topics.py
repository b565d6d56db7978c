"""Fresh topics and a fresh consumer group for one run, and a consumer's Kafka settings for
them (the benchmarks' streams and the system tests' proofs each run on topics of their own)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.errors import KafkaError

from benchmarks.exceptions import BenchError
from geoverdict_stack.kafka import create_topics


@dataclass(frozen=True)
class Topics:
    """Fresh input, verdict and dead-letter topics on one broker, and a fresh group."""

    bootstrap: str
    input: str
    verdicts: str
    dead: str
    group: str
    partitions: int

    @classmethod
    def create(cls, bootstrap: str, partitions: int = 4, prefix: str = "eo") -> Topics:
        """Create them (`partitions` each), named `prefix`-images-TAG and so on."""
        tag = uuid.uuid4().hex[:8]
        topics = cls(
            bootstrap,
            f"{prefix}-images-{tag}",
            f"{prefix}-verdicts-{tag}",
            f"{prefix}-dead-{tag}",
            f"{prefix}-{tag}",
            partitions,
        )
        try:
            create_topics(bootstrap, dict.fromkeys(topics.names(), partitions))
        except KafkaError as exc:
            raise BenchError(f"cannot create topics on {bootstrap}: {exc}") from exc
        return topics

    def names(self) -> tuple[str, str, str]:
        """Input, verdicts, dead letters."""
        return self.input, self.verdicts, self.dead

    def input_partitions(self) -> list[TopicPartition]:
        """Every partition of the input topic."""
        return [TopicPartition(self.input, p) for p in range(self.partitions)]

    def environment(self) -> dict[str, str]:
        """A consumer's Kafka settings for these topics and this group."""
        return {
            "GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "GEOVERDICT_KAFKA_INPUT_TOPIC": self.input,
            "GEOVERDICT_KAFKA_VERDICT_TOPIC": self.verdicts,
            "GEOVERDICT_KAFKA_DEAD_LETTER_TOPIC": self.dead,
            "GEOVERDICT_GROUP_ID": self.group,
        }
