"""Proofs of the exactly-once guarantee on real servers: consumers killed with -9, a group that
grows and shrinks, a consumer frozen while its transaction is open, the broker restarted.

Each proof publishes events with known ids, lets `geoverdict consume` processes answer them
through whatever is done to them, waits until the group has committed every input record, and
then counts the answers per event id with an independent client (kcat, read_committed): an
event with no verdict or dead letter is missing, a second answer is a duplicate. The harness
only starts, signals and watches processes, through the service's public surface (settings,
command line, /metrics, the broker); recovering is the service's job.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.topics import Topics
from geoverdict_service.events import make_event
from geoverdict_service.kafka_clients import make_producer
from geoverdict_service.publisher import send_events
from geoverdict_service.settings import load_kafka_settings
from geoverdict_stack import process
from geoverdict_stack.kafka import KafkaServer
from geoverdict_stack.ports import free_ports
from tests.system.answers import (
    Counts,
    answer_times,
    copies_written,
    count_answers,
)
from tests.system.broker_transactions import BrokerTransactions, TransactionState
from tests.system.consumers import ConsumerProcess, GroupView, consumer_environment
from tests.system.exceptions import HarnessError

GUARANTEES = ("exactly_once", "at_least_once")
TRANSACTIONAL_ID_PREFIX = "geoverdict-bench"
BEGIN, END = "<!-- exactly-once:begin -->", "<!-- exactly-once:end -->"


# -- what a proof runs against ------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A broker, a model server's consumer settings (GEOVERDICT_TORCHSERVE_URL, ...), photos to
    publish and a folder for the consumers' logs."""

    bootstrap: str
    model: dict[str, str]
    photos: Sequence[bytes]
    logs: Path
    max_poll_records: int = 32
    settings: dict[str, str] = field(default_factory=dict)  # more consumer settings by field

    def consumers(self, topics: Topics, guarantee: str, name: str) -> Callable[[], ConsumerProcess]:
        """Starts consumers of `topics`, the n-th logging to `name`-n.log."""
        env = consumer_environment(
            topics,
            self.model,
            guarantee,
            max_poll_records=str(self.max_poll_records),
            transactional_id_prefix=TRANSACTIONAL_ID_PREFIX,
            **self.settings,
        )
        started = 0

        def start() -> ConsumerProcess:
            nonlocal started
            started += 1
            return ConsumerProcess(env, self.logs / topics.group / f"{name}-{started}.log")

        return start


def transactional_ids(topics: Topics, partitions: Sequence[int] | None = None) -> list[str]:
    """The transactional ids of the group's producers for `partitions` of the input topic
    (default: all), as docs/operations.md documents them: PREFIX-GROUP-TOPIC-PARTITION."""
    chosen = range(topics.partitions) if partitions is None else partitions
    return [f"{TRANSACTIONAL_ID_PREFIX}-{topics.group}-{topics.input}-{p}" for p in chosen]


def distinct(photo: bytes, index: int) -> bytes:
    """The JPEG `photo` with a comment segment naming `index` right after its start marker:
    other bytes (no cache answers it), the same pixels."""
    if photo[:2] != b"\xff\xd8":
        raise HarnessError("the proofs publish JPEG photos")
    comment = f"geoverdict bench event {index}".encode()
    return photo[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + photo[2:]


class Stream:
    """Events with ids `prefix`-0, -1, ... published from a thread of its own, all at once or
    `rate` per second, each acknowledged (idempotent: a send retried across a broker restart
    is written once)."""

    def __init__(
        self, target: Target, topic: str, events: int, rate: float | None, prefix: str
    ) -> None:
        self.ids = [f"{prefix}-{k}" for k in range(events)]
        self.sent_at: dict[str, float] = {}
        self._target = target
        self._topic = topic
        self._rate = rate
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._publish, name="publisher", daemon=True)
        self._thread.start()

    def _events(self) -> Iterator[dict[str, Any]]:
        photos = self._target.photos
        for k, event_id in enumerate(self.ids):
            image = distinct(photos[k % len(photos)], k)
            yield make_event(event_id, image_bytes=image, event_id=event_id, source="bench")

    def _publish(self) -> None:
        kafka = load_kafka_settings(bootstrap_servers=self._target.bootstrap)
        try:
            producer = make_producer(kafka, acks="all", linger_ms=5, enable_idempotence=True)
            try:
                self.sent_at = send_events(producer, self._topic, self._events(), self._rate)
            finally:
                producer.close()
        except BaseException as exc:  # raised in join()
            self._error = exc

    def done(self) -> bool:
        """Every event sent and acknowledged (or the publisher failed)."""
        return not self._thread.is_alive()

    def join(self, timeout_s: float = 900.0) -> None:
        """Wait for the last acknowledgement; raises what stopped the publisher."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise HarnessError(f"publishing {len(self.ids)} events took over {timeout_s:.0f} s")
        if self._error is not None:
            raise HarnessError(f"publishing failed: {self._error}") from self._error


def _wait_committed(
    view: GroupView, at_least: int, consumer: ConsumerProcess, timeout_s: float
) -> float:
    """Wait until the group committed `at_least` input records; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if view.committed() >= at_least:
            return time.monotonic() - started
        if not consumer.alive():
            raise HarnessError(f"consumer {consumer.pid} exited:\n{consumer.log_tail()}")
        time.sleep(0.05)
    raise HarnessError(f"fewer than {at_least} records committed after {timeout_s:.0f} s")


def _done_timeout(events: int) -> float:
    return 120.0 + events / 5


# -- kill -9 ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kill:
    """One kill -9: when (seconds into the run), at which kind of moment (random, or a random
    one with answers written and their offsets not committed: the window), after how many
    SIGSTOP probes, the records committed just before, and how long until the next consumer
    committed again."""

    at_s: float
    moment: str  # random | window | random (window not caught)
    probes: int
    committed_before: int
    recovery_s: float


@dataclass(frozen=True)
class KillRun:
    """kill -9 runs: each consumer killed at a random moment, the last left to finish."""

    guarantee: str
    events: int
    rate: float | None  # None: a backlog published before the first consumer starts
    kills: list[Kill]
    counts: Counts
    seconds: float
    last_exit_status: int | None


def kill_run(
    target: Target,
    guarantee: str = "exactly_once",
    events: int = 1000,
    kills: int = 10,
    rate: float | None = None,
    seed: int = 0,
    partitions: int = 4,
) -> KillRun:
    """Publish `events`, start a consumer, kill -9 it at a random moment (seeded) `kills`
    times, each time starting a new one, let the last finish; count the answers.

    Most moments find a consumer waiting on the model server, where a kill costs nothing under
    either guarantee. So every other kill (the 1st, 3rd, ...) is aimed: the consumer is frozen
    at random moments until it is caught with answers written whose input offsets are not
    committed (exactly once: a transaction open; at least once: verdicts acknowledged, their
    offsets not), and killed there."""
    if guarantee not in GUARANTEES:
        raise HarnessError(f"guarantee must be one of {GUARANTEES}, got {guarantee!r}")
    rng = random.Random(seed)
    topics = Topics.create(target.bootstrap, partitions, prefix="kill")
    stream = Stream(target, topics.input, events, rate, prefix=f"kill-{topics.group}")
    if rate is None:
        stream.join()
    view = GroupView(topics)
    broker = BrokerTransactions(target.bootstrap)
    ids = transactional_ids(topics)
    start = target.consumers(topics, guarantee, "consumer")
    # Kill when the group has committed these many records (and a random moment more):
    points = sorted(rng.sample(range(events // 20, events * 9 // 10), kills))
    began = time.monotonic()
    consumer = start()
    done: list[Kill] = []
    try:
        for number, point in enumerate(points, start=1):
            if view.committed() >= events:
                break  # the stream is answered: no moment is left to kill in
            _wait_committed(view, point, consumer, _done_timeout(events))
            time.sleep(rng.uniform(0.0, 0.3))
            moment, probes = "random", 0
            if number % 2 == 1:
                window = (
                    _open_transaction(broker, ids)
                    if guarantee == "exactly_once"
                    else _unacknowledged_commit(view)
                )
                probes = _freeze_in_window(consumer, window, view, events, rng)
                if probes < 0 and view.committed() >= events:
                    break  # answered while it was probed
                moment = "window" if probes > 0 else "random (window not caught)"
            consumer.kill()
            killed_at = time.monotonic()
            time.sleep(0.1)  # what the killed one had on its way lands (or never will)
            before = view.committed()
            consumer = start()
            if before < events:
                _wait_committed(view, before + 1, consumer, _done_timeout(events))
            done.append(
                Kill(
                    round(killed_at - began, 2),
                    moment,
                    abs(probes),
                    before,
                    round(time.monotonic() - killed_at, 2),
                )
            )
        stream.join()
        view.wait_done(_done_timeout(events))
        seconds = time.monotonic() - began
        counts = count_answers(target.bootstrap, (topics.verdicts, topics.dead), stream.ids)
        status = consumer.stop()
    finally:
        if consumer.alive():
            consumer.kill()
        view.close()
        broker.close()
    return KillRun(guarantee, events, rate, done, counts, round(seconds, 1), status)


def _freeze_in_window(
    consumer: ConsumerProcess,
    window: Callable[[], bool],
    view: GroupView,
    events: int,
    rng: random.Random,
    attempts: int = 1000,
) -> int:
    """SIGSTOP `consumer` at random moments until `window` says it is frozen with answers
    written whose offsets are not committed (asked twice, 50 ms apart, so that a commit on
    its way cannot pass for one not sent); it is left frozen then. Returns the probes it
    took, or minus that many when none caught it (left running)."""
    for probe in range(1, attempts + 1):
        consumer.freeze()
        if window():
            time.sleep(0.05)
            if window():
                return probe
        consumer.thaw()
        if view.committed() >= events:
            return -probe  # nothing left to answer
        time.sleep(rng.uniform(0.005, 0.05))
    return -attempts


def _open_transaction(broker: BrokerTransactions, ids: list[str]) -> Callable[[], bool]:
    """exactly_once's window: one of the group's transactions is open at the broker."""
    return lambda: any(s.ongoing for s in broker.describe(ids).values())


def _unacknowledged_commit(view: GroupView) -> Callable[[], bool]:
    """at_least_once's window: more answers written than records committed, beyond the
    duplicates already written before (the least difference seen since it was made)."""
    floor: list[int] = []

    def caught() -> bool:
        committed = view.committed()  # first: a commit landing meanwhile only raises `ahead`
        ahead = view.written() - committed
        if floor and ahead > floor[0]:
            return True
        floor[:] = [min([ahead, *floor])]
        return False

    return caught


# -- grow and shrink ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One change of the group's size: how long until the group was stable again, the longest
    gap between consecutive verdicts around it, and the longest an event waited for its answer
    among those published around it."""

    label: str  # "1 -> 3"
    at_s: float
    settle_s: float
    pause_s: float
    worst_latency_s: float


@dataclass(frozen=True)
class RebalanceRun:
    """A steady stream over a group of 1, then 3, then 1 consumers."""

    events: int
    rate: float
    partitions: int
    baseline_gap_s: float  # the longest gap between verdicts before the first change
    changes: list[Change]
    counts: Counts
    exit_statuses: list[int | None]
    seconds: float


def rebalance_run(
    target: Target,
    events: int = 3000,
    rate: float = 40.0,
    partitions: int = 8,
    sizes: Sequence[int] = (1, 3, 1),
) -> RebalanceRun:
    """Publish `events` at `rate` per second while the group has each of `sizes` members in
    turn (one phase each, consumers added, or stopped with SIGTERM, newest first)."""
    topics = Topics.create(target.bootstrap, partitions, prefix="rebalance")
    view = GroupView(topics)
    start = target.consumers(topics, "exactly_once", "consumer")
    members = [start() for _ in range(sizes[0])]
    statuses: list[int | None] = []
    try:
        view.wait_members(sizes[0], 90)
        began_wall, began = time.time(), time.monotonic()
        stream = Stream(target, topics.input, events, rate, prefix=f"rebalance-{topics.group}")
        phase_s = events / rate / len(sizes)
        changed: list[tuple[str, float, float, float]] = []  # label, wall time, at_s, settle_s
        for index, size in enumerate(sizes[1:], start=1):
            time.sleep(max(0.0, began + index * phase_s - time.monotonic()))
            at_wall, at = time.time(), time.monotonic()
            while len(members) < size:
                members.append(start())
            while len(members) > size:
                statuses.append(members.pop().stop())
            settle = view.wait_members(size, 120)
            changed.append((f"{sizes[index - 1]} -> {size}", at_wall, at - began, settle))
        stream.join()
        view.wait_done(_done_timeout(events))
        seconds = time.monotonic() - began
        counts = count_answers(target.bootstrap, (topics.verdicts, topics.dead), stream.ids)
        stamps = answer_times(target.bootstrap, topics.verdicts)
    finally:
        statuses += [member.stop() for member in members]
        view.close()
    first_change = changed[0][1] if changed else time.time()
    ends = [wall for _, wall, _, _ in changed[1:]] + [time.time()]
    changes = [
        _change(label, wall, at_s, settle, min(end, wall + settle + 5.0), stamps, stream.sent_at)
        for (label, wall, at_s, settle), end in zip(changed, ends, strict=True)
    ]
    return RebalanceRun(
        events,
        rate,
        partitions,
        round(_longest_gap(stamps, began_wall + 3, first_change), 3),
        changes,
        counts,
        statuses,
        round(seconds, 1),
    )


def _longest_gap(stamps: dict[str, float], since: float, until: float) -> float:
    """The longest time without a verdict between `since` and `until` (epoch seconds)."""
    inside = sorted(t for t in stamps.values() if since <= t <= until)
    edges = [since, *inside, until]
    return max((b - a for a, b in itertools.pairwise(edges)), default=0.0)


def _change(
    label: str,
    wall: float,
    at_s: float,
    settle_s: float,
    until: float,
    stamps: dict[str, float],
    sent_at: dict[str, float],
) -> Change:
    """The change made at `wall` (epoch seconds), measured up to `until`: a second before it
    to a few after the group settled (or the next change)."""
    waited = [stamps[i] - sent for i, sent in sent_at.items() if wall - 1 <= sent <= until]
    return Change(
        label,
        round(at_s, 1),
        round(settle_s, 2),
        round(_longest_gap(stamps, wall - 1.0, until), 3),
        round(max(waited, default=0.0), 3),
    )


# -- the frozen consumer ----------------------------------------------------------------------
@dataclass(frozen=True)
class FreezeRun:
    """Consumer A frozen (SIGSTOP) with a transaction open, past its session timeout, while B
    takes its partitions; then A thawed."""

    events: int
    rate: float
    attempts: int  # SIGSTOPs until one found a transaction of A's open
    caught: list[TransactionState]  # A's open transactions, as the broker showed them
    after_takeover: list[TransactionState]  # the same ids once B owned their partitions
    frozen_s: float
    takeover_s: float  # from the SIGSTOP to B owning every partition
    fenced_metric: float  # A's geoverdict_transactions_total{result="fenced"}
    aborted_metric: float
    rejoined: bool  # A had partitions again before it was stopped
    exit_a: int | None
    exit_b: int | None
    counts: Counts

    @property
    def superseded(self) -> bool:
        """Each caught transaction is no longer A's: its producer's epoch moved on (B's
        initialisation aborted it and fenced A's producer)."""
        after = {s.transactional_id: s for s in self.after_takeover}
        return all(after[s.transactional_id].producer_epoch > s.producer_epoch for s in self.caught)


def freeze_run(
    target: Target,
    events: int = 1200,
    rate: float = 40.0,
    attempts: int = 200,
    seed: int = 0,
    partitions: int = 4,
) -> FreezeRun:
    """Two consumers A and B; SIGSTOP A the moment the broker shows one of its transactions
    open (at most `attempts` SIGSTOPs, _catch_open_transaction); keep A stopped until B owns
    every partition; SIGCONT A; count."""
    rng = random.Random(seed)
    topics = Topics.create(target.bootstrap, partitions, prefix="freeze")
    view = GroupView(topics)
    broker = BrokerTransactions(target.bootstrap)
    start = target.consumers(topics, "exactly_once", "consumer")
    a = start()
    b: ConsumerProcess | None = None
    try:
        # Each member as the broker names it: A's client id is the group's only one while A
        # is alone, B's the other one once B joined.
        (a_id,) = view.wait_member_ids(1, 90)
        b = start()
        (b_id,) = view.wait_member_ids(2, 90) - {a_id}
        stream = Stream(target, topics.input, events, rate, prefix=f"freeze-{topics.group}")
        _wait_committed(view, min(events // 10, 50), a, _done_timeout(events))
        ids = transactional_ids(topics, sorted(view.members().get(a_id, ())))
        if not ids:
            raise HarnessError("consumer A owns no partition")
        tries, caught = _catch_open_transaction(a, broker, ids, attempts, rng)
        frozen_at = time.monotonic()
        takeover = view.wait_members({b_id: partitions}, 120)
        after = _superseded(broker, caught, timeout_s=60)
        frozen = time.monotonic() - frozen_at
        a.thaw()
        rejoined = _wait_rejoined(view, a, a_id, timeout_s=60)
        stream.join()
        view.wait_done(_done_timeout(events))
        counts = count_answers(target.bootstrap, (topics.verdicts, topics.dead), stream.ids)
        fenced = a.metric("geoverdict_transactions_total", {"result": "fenced"})
        aborted = a.metric("geoverdict_transactions_total", {"result": "aborted"})
    finally:
        a.thaw()
        exit_a = a.stop()
        exit_b = b.stop() if b is not None else None
        view.close()
        broker.close()
    return FreezeRun(
        events,
        rate,
        tries,
        caught,
        after,
        round(frozen, 2),
        round(takeover, 2),
        fenced,
        aborted,
        rejoined,
        exit_a,
        exit_b,
        counts,
    )


def _catch_open_transaction(
    consumer: ConsumerProcess,
    broker: BrokerTransactions,
    ids: list[str],
    attempts: int,
    rng: random.Random,
    timeout_s: float = 120.0,
) -> tuple[int, list[TransactionState]]:
    """SIGSTOP `consumer` with one of its transactions (`ids`) open at the broker; it is left
    stopped then. The broker is watched until one shows open, the consumer stopped at once,
    and the transaction checked again 50 ms later (one whose commit was on its way would have
    ended by then); a miss is thawed at once, well within its session timeout. Returns the
    SIGSTOPs it took."""
    deadline = time.monotonic() + timeout_s
    stops = 0
    while stops < attempts and time.monotonic() < deadline:
        if not any(s.ongoing for s in broker.describe(ids).values()):
            time.sleep(rng.uniform(0.0, 0.004))
            continue
        consumer.freeze()
        stops += 1
        time.sleep(0.05)
        open_now = [s for s in broker.describe(ids).values() if s.ongoing]
        if open_now:
            return stops, open_now
        consumer.thaw()
    raise HarnessError(
        f"no transaction of consumer A stayed open in {stops} SIGSTOPs over {timeout_s:.0f} s"
    )


def _superseded(
    broker: BrokerTransactions, caught: list[TransactionState], timeout_s: float
) -> list[TransactionState]:
    """The caught ids once a newer producer epoch holds each (or as they are at the timeout)."""
    deadline = time.monotonic() + timeout_s
    epochs = {s.transactional_id: s.producer_epoch for s in caught}
    while True:
        now = broker.describe(epochs)
        if all(now[i].producer_epoch > e for i, e in epochs.items()):
            return list(now.values())
        if time.monotonic() > deadline:
            return list(now.values())
        time.sleep(0.1)


def _wait_rejoined(
    view: GroupView, consumer: ConsumerProcess, client_id: str, timeout_s: float
) -> bool:
    """True once `consumer` (the member `client_id`) owns partitions again (False if it did
    not, or exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and consumer.alive():
        if view.members().get(client_id):
            return True
        time.sleep(0.2)
    return False


# -- broker restart ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerRestartRun:
    """The broker stopped mid-stream (SIGTERM, or SIGKILL to its process group), started again
    with its data, the consumer left to recover on its own."""

    signal: str
    events: int
    rate: float
    open_at_stop: int  # transactions the broker showed open just before the signal
    stop_s: float  # until the broker process was gone
    down_s: float  # from the signal to the broker answering again
    recovery_s: float | None  # from the broker answering to the consumer's next commit
    consumer_survived: bool
    aborted_metric: float
    published_twice: int  # input records written twice by the publisher (0 with idempotence)
    counts: Counts
    exit_status: int | None
    consumer_log_tail: str  # when it did not recover: what it said


def broker_restart_run(
    target: Target,
    how: str = "SIGTERM",
    events: int = 1200,
    rate: float = 40.0,
    down_s: float = 5.0,
    partitions: int = 4,
) -> BrokerRestartRun:
    """A broker of its own (free ports, a folder under the logs); its consumer answers a steady
    stream; a third of the way in the broker is stopped by `how` (SIGTERM or SIGKILL), kept
    down `down_s`, started again with its data; count."""
    if how not in ("SIGTERM", "SIGKILL"):
        raise HarnessError(f"how must be SIGTERM or SIGKILL, got {how!r}")
    kafka_port, controller_port, sasl_port, ssl_port = free_ports(4)
    # Configured as the stack's broker (its secured listeners and authorizer too): GroupView
    # asks for the group's authorized operations, which only an authorizer answers.
    server = KafkaServer(
        target.logs / f"broker-{how.lower()}-{kafka_port}",
        kafka_port,
        controller_port,
        sasl_port=sasl_port,
        ssl_port=ssl_port,
    )
    record, _ = server.start()
    own = dataclasses.replace(target, bootstrap=server.bootstrap_servers)
    consumer: ConsumerProcess | None = None
    try:
        topics = Topics.create(own.bootstrap, partitions, prefix="restart")
        ids = transactional_ids(topics)
        consumer = own.consumers(topics, "exactly_once", "consumer")()
        view = GroupView(topics)
        view.wait_members(1, 90)
        stream = Stream(own, topics.input, events, rate, prefix=f"restart-{topics.group}")
        _wait_committed(view, events // 3, consumer, _done_timeout(events))
        open_at_stop = _open_transactions(own.bootstrap, ids, timeout_s=10)
        view.close()
        signalled = time.monotonic()
        _stop_broker(record, how)
        stop_s = time.monotonic() - signalled
        time.sleep(max(0.0, down_s - stop_s))
        record, _ = server.start()
        back = time.monotonic()
        view = GroupView(topics)
        # what had been committed when the broker stopped is read back once it answers; the
        # recovery is the consumer's first commit beyond it
        recovery = _recovery(view, consumer, back, timeout_s=180)
        stream.join()
        finished = recovery is not None and _finished(view, events)
        counts = count_answers(own.bootstrap, (topics.verdicts, topics.dead), stream.ids)
        twice = copies_written(own.bootstrap, topics.input)
        survived = consumer.alive()
        aborted = (
            consumer.metric("geoverdict_transactions_total", {"result": "aborted"})
            if (survived)
            else 0.0
        )
        view.close()
        status = consumer.stop()
        tail = "" if finished else consumer.log_tail(40)
    finally:
        if consumer is not None and consumer.alive():
            consumer.kill()
        process.stop(record)
    return BrokerRestartRun(
        how,
        events,
        rate,
        open_at_stop,
        round(stop_s, 2),
        round(back - signalled, 2),
        None if recovery is None else round(recovery, 2),
        survived,
        aborted,
        twice,
        counts,
        status,
        tail,
    )


def _open_transactions(bootstrap: str, ids: list[str], timeout_s: float) -> int:
    """How many of `ids` the broker shows open, waiting up to `timeout_s` for at least one."""
    broker = BrokerTransactions(bootstrap)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            found = sum(s.ongoing for s in broker.describe(ids).values())
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.002)
    finally:
        broker.close()


def _stop_broker(record: process.ProcessRecord, how: str) -> None:
    """SIGTERM (a controlled shutdown; SIGKILL after 15 s) or SIGKILL to its process group."""
    if how == "SIGTERM":
        process.stop(record)
        return
    proc = record.process()
    os.killpg(record.pid, signal.SIGKILL)
    if proc is not None:
        psutil.wait_procs([proc], timeout=30)


def _recovery(
    view: GroupView, consumer: ConsumerProcess, back: float, timeout_s: float
) -> float | None:
    """Seconds from `back` (the broker started again, monotonic) until the group commits
    beyond what the broker held when it answered again; None when it did not (or the consumer
    exited)."""
    try:
        held = view.committed()
        _wait_committed(view, held + 1, consumer, timeout_s)
    except HarnessError:
        return None
    return time.monotonic() - back


def _finished(view: GroupView, events: int) -> bool:
    try:
        view.wait_done(_done_timeout(events))
    except HarnessError:
        return False
    return True


# -- all of them ------------------------------------------------------------------------------
@dataclass
class ExactlyOnceResults:
    """Whatever proofs ran, as bench/exactly-once.json holds them."""

    model: str = ""
    failed: dict[str, str] = field(default_factory=dict)  # proof -> why it could not run
    kill: dict[str, KillRun] = field(default_factory=dict)  # by guarantee
    rebalance: RebalanceRun | None = None
    freeze: FreezeRun | None = None
    broker_restart: dict[str, BrokerRestartRun] = field(default_factory=dict)  # by signal

    @property
    def exact(self) -> bool:
        """Every proof of exactly_once that ran answered each event exactly once (at least
        once is run to count what it allows, not to pass)."""
        runs: list[Any] = [self.rebalance, self.freeze, *self.broker_restart.values()]
        runs.append(self.kill.get("exactly_once"))
        return not self.failed and all(r.counts.exact for r in runs if r is not None)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, each proof with its counts."""
        return asdict(self)
