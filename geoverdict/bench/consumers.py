"""`geoverdict consume` as processes the benchmarks start, kill, freeze and stop, and their
group as the broker sees it (members and their partitions, committed offsets, lag)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from geoverdict.bench.exceptions import BenchError
from geoverdict_stack.kafka import create_topics

# A killed or frozen member leaves the group when its session times out: the least Kafka takes.
SESSION_TIMEOUT_MS = 6000
METRICS_LINE = re.compile(rb"metrics on :(\d+)")
Answer = TypeVar("Answer")


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


def consumer_environment(
    topics: Topics, model: Mapping[str, str], guarantee: str, **settings: str
) -> dict[str, str]:
    """The environment of a consumer of `topics` talking to the model server `model` (its
    GEOVERDICT_* settings) with the processing guarantee `guarantee`, no Redis, a short session
    and a free metrics port; `settings` are more GEOVERDICT_* settings by field name
    (max_poll_records="8")."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GEOVERDICT_")}
    return {
        **inherited,
        **topics.environment(),
        **model,
        "GEOVERDICT_PROCESSING_GUARANTEE": guarantee,
        "GEOVERDICT_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "GEOVERDICT_REDIS_URL": "",
        "GEOVERDICT_METRICS_PORT": "0",
        "GEOVERDICT_METRICS_HOST": "127.0.0.1",
        **{f"GEOVERDICT_{name.upper()}": value for name, value in settings.items()},
    }


class ConsumerProcess:
    """One `geoverdict consume`, its output in `log_file`."""

    def __init__(self, environment: Mapping[str, str], log_file: Path) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_file
        with log_file.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "geoverdict", "consume"],
                env=dict(environment),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    @property
    def client_id(self) -> str:
        """The Kafka client id it joins the group with (consumer.py's)."""
        return f"geoverdict-{socket.gethostname()}-{self.pid}"

    def alive(self) -> bool:
        """True while it runs (also while frozen)."""
        return self.popen.poll() is None

    def kill(self) -> None:
        """kill -9, and wait for it."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def freeze(self) -> None:
        """SIGSTOP: every thread stops, its heartbeats too."""
        self.popen.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT."""
        self.popen.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (it finishes its batch, commits and closes) and wait; its exit status, or
        None when it had to be killed after `timeout_s`."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log(self) -> str:
        """Everything it wrote so far."""
        return self.log_file.read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        """Its last lines, for a report."""
        return "\n".join(self.log().splitlines()[-lines:])

    def metrics_port(self, timeout_s: float = 60.0) -> int:
        """The port of its /metrics (a free one: it logs which once it consumes)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = METRICS_LINE.search(self.log_file.read_bytes())
            if found:
                return int(found.group(1))
            if not self.alive():
                break
            time.sleep(0.1)
        raise BenchError(f"consumer {self.pid} did not start:\n{self.log_tail()}")

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample of its /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        wanted = dict(labels or {})
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in wanted.items()
                ):
                    return float(sample.value)
        return 0.0


class GroupView:
    """The group of `topics` as the broker sees it."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        try:
            self._admin = KafkaAdminClient(
                bootstrap_servers=topics.bootstrap, client_id="geoverdict-bench-group"
            )
            self._ends = KafkaConsumer(
                bootstrap_servers=topics.bootstrap,
                client_id="geoverdict-bench-group",
                enable_auto_commit=False,
            )
        except KafkaError as exc:
            raise BenchError(f"no Kafka broker at {topics.bootstrap}: {exc}") from exc

    def _ask(self, question: Callable[[], Answer], timeout_s: float = 30.0) -> Answer:
        """`question` answered, asked again while the broker answers with an error (a
        coordinator still loading, a broker restarting) for up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return question()
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.topics.bootstrap} keeps failing: {exc}") from exc
                time.sleep(0.2)

    def members(self) -> dict[str, set[int]]:
        """Each member's client id and its input partitions (empty while it rebalances)."""
        # Asked with the authorized operations: else the broker sends its "not asked" value
        # (INT32_MIN), which kafka-python 2.3.3 decodes as operation 31 and fails on.
        (group,) = self._ask(
            lambda: self._admin.describe_consumer_groups(
                [self.topics.group], include_authorized_operations=True
            )
        )
        if group.state != "Stable":
            return {}
        return {
            member.client_id: {
                p
                for topic, parts in member.member_assignment.assignment
                for p in parts
                if topic == self.topics.input
            }
            for member in group.members
            if member.member_assignment
        }

    def committed_by_partition(self) -> dict[int, int]:
        """The group's committed offset of each input partition (absent: none yet)."""
        offsets = self._ask(lambda: self._admin.list_consumer_group_offsets(self.topics.group))
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == self.topics.input and meta.offset >= 0
        }

    def committed(self) -> int:
        """The group's committed offsets on the input topic, summed: records done."""
        return sum(self.committed_by_partition().values())

    def end(self) -> int:
        """The input topic's end offsets, summed: records published."""
        ends = self._ask(lambda: self._ends.end_offsets(self.topics.input_partitions()))
        return sum(ends.values())

    def written(self) -> int:
        """The verdict and dead-letter topics' end offsets, summed: records written to them
        (with exactly_once, transaction markers and aborted records too)."""
        outputs = [
            TopicPartition(topic, p)
            for topic in (self.topics.verdicts, self.topics.dead)
            for p in range(self.topics.partitions)
        ]
        ends = self._ask(lambda: self._ends.end_offsets(outputs))
        return sum(ends.values())

    def lag(self) -> int:
        """Records published and not committed yet."""
        return self.end() - self.committed()

    def wait_members(self, expected: Mapping[str, int] | int, timeout_s: float) -> float:
        """Wait until the group is stable with `expected` members (a count, or client id ->
        how many partitions) sharing every input partition; the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            members = self.members()
            owned = sorted(p for parts in members.values() for p in parts)
            if owned == list(range(self.topics.partitions)) and _matches(members, expected):
                return time.monotonic() - started
            time.sleep(0.1)
        raise BenchError(
            f"group {self.topics.group} not stable with {expected} members after "
            f"{timeout_s:.0f} s (now {self.members()})"
        )

    def wait_done(self, timeout_s: float) -> float:
        """Wait until every published record is committed; the seconds it took (raises after
        `timeout_s`, saying how many records are left)."""
        started = time.monotonic()
        while True:
            if self.lag() == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise BenchError(f"{self.lag()} records not committed after {timeout_s:.0f} s")
            time.sleep(0.2)

    def close(self) -> None:
        """Close the connections."""
        self._admin.close()
        self._ends.close()


def _matches(members: Mapping[str, set[int]], expected: Mapping[str, int] | int) -> bool:
    if isinstance(expected, int):
        return len(members) == expected and all(members.values())
    return {k: len(v) for k, v in members.items()} == dict(expected)
