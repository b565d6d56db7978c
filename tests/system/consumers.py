"""`geoverdict consume` as processes the system tests start, kill, freeze and stop, and their
group as the broker sees it (members and their partitions, committed offsets, lag).

Only the service's public surface: its settings (environment), its command line, its /metrics
endpoint on a port the harness chooses, and the broker's answers about the group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.topics import Topics
from geoverdict_stack.ports import free_ports
from tests.system.exceptions import HarnessError

# A killed or frozen member leaves the group when its session times out: the least Kafka takes.
SESSION_TIMEOUT_MS = 6000
Answer = TypeVar("Answer")


def consumer_environment(
    topics: Topics, model: Mapping[str, str], guarantee: str, **settings: str
) -> dict[str, str]:
    """The environment of a consumer of `topics` talking to the model server `model` (its
    GEOVERDICT_* settings) with the processing guarantee `guarantee`, no Redis and a short
    session; `settings` are more GEOVERDICT_* settings by field name (max_poll_records="8").
    Each ConsumerProcess adds its own metrics port."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GEOVERDICT_")}
    return {
        **inherited,
        **topics.environment(),
        **model,
        "GEOVERDICT_PROCESSING_GUARANTEE": guarantee,
        "GEOVERDICT_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "GEOVERDICT_REDIS_URL": "",
        "GEOVERDICT_METRICS_HOST": "127.0.0.1",
        **{f"GEOVERDICT_{name.upper()}": value for name, value in settings.items()},
    }


class ConsumerProcess:
    """One `geoverdict consume`, its output in `log_file` (for a failure's report), its
    /metrics on a free port chosen here."""

    def __init__(self, environment: Mapping[str, str], log_file: Path) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_file
        (self.metrics_port,) = free_ports(1)
        with log_file.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "geoverdict", "consume"],
                env={**environment, "GEOVERDICT_METRICS_PORT": str(self.metrics_port)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

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

    def metric(
        self, name: str, labels: Mapping[str, str] | None = None, timeout_s: float = 60.0
    ) -> float:
        """One sample of its /metrics (0 when absent), waiting up to `timeout_s` for the
        endpoint to answer (it serves once the consumer started)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    text = response.read().decode()
                break
            except (urllib.error.URLError, ConnectionError) as exc:
                if not self.alive() or time.monotonic() > deadline:
                    raise HarnessError(
                        f"consumer {self.pid} serves no {url}: {exc}\n{self.log_tail()}"
                    ) from exc
                time.sleep(0.2)
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
                bootstrap_servers=topics.bootstrap, client_id="geoverdict-system-group"
            )
            self._ends = KafkaConsumer(
                bootstrap_servers=topics.bootstrap,
                client_id="geoverdict-system-group",
                enable_auto_commit=False,
            )
        except KafkaError as exc:
            raise HarnessError(f"no Kafka broker at {topics.bootstrap}: {exc}") from exc

    def _ask(self, question: Callable[[], Answer], timeout_s: float = 30.0) -> Answer:
        """`question` answered, asked again while the broker answers with an error (a
        coordinator still loading, a broker restarting) for up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return question()
            except (KafkaError, ValueError) as exc:
                # ValueError: a group answer carrying an error (its coordinator still loading
                # after a broker restart) has the "not asked" authorized operations, INT32_MIN,
                # which kafka-python 2.3.3 decodes before looking at the error, and fails on.
                if time.monotonic() > deadline:
                    raise HarnessError(f"{self.topics.bootstrap} keeps failing: {exc}") from exc
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
        raise HarnessError(
            f"group {self.topics.group} not stable with {expected} members after "
            f"{timeout_s:.0f} s (now {self.members()})"
        )

    def wait_member_ids(self, expected: int, timeout_s: float) -> set[str]:
        """The client ids of the members once the group is stable with `expected` of them (as
        the broker names them: the harness never rebuilds a consumer's client id)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.wait_members(expected, max(0.0, deadline - time.monotonic()))
            members = self.members()  # asked again: the group may be rebalancing by now
            if len(members) == expected:
                return set(members)

    def wait_done(self, timeout_s: float) -> float:
        """Wait until every published record is committed; the seconds it took (raises after
        `timeout_s`, saying how many records are left)."""
        started = time.monotonic()
        while True:
            if self.lag() == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise HarnessError(f"{self.lag()} records not committed after {timeout_s:.0f} s")
            time.sleep(0.2)

    def close(self) -> None:
        """Close the connections."""
        self._admin.close()
        self._ends.close()


def _matches(members: Mapping[str, set[int]], expected: Mapping[str, int] | int) -> bool:
    if isinstance(expected, int):
        return len(members) == expected and all(members.values())
    return {k: len(v) for k, v in members.items()} == dict(expected)
