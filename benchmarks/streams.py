"""End-to-end stream benchmarks on the real stack: the pipeline (cold cache), the same photos
again (warm cache), and the naive consumer, each driven through Kafka and measured from the
verdicts that come out."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Sequence

import psutil
from kafka import KafkaProducer

from benchmarks.results import StreamResult
from benchmarks.topics import Topics
from geoverdict_service.collector import VerdictCollector
from geoverdict_service.events import make_event
from geoverdict_service.publisher import send_events
from geoverdict_stack.stack import Stack


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of `values` (nearest rank; NaN for none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(
    label: str,
    producer: KafkaProducer,
    collector: VerdictCollector,
    topic: str,
    images: Sequence[bytes],
    rate: float | None = None,
    timeout_s: float = 600.0,
    consumer_pid: int | None = None,
    broker_pids: Sequence[int] = (),
) -> StreamResult:
    """Publish, wait for every verdict, and compute throughput and latency (and the CPU per
    event of the consumer and of the broker's processes, when given)."""
    proc = psutil.Process(consumer_pid) if consumer_pid else None
    cpu_before = sum(proc.cpu_times()[:2]) if proc else 0.0
    brokers = [psutil.Process(pid) for pid in broker_pids]
    broker_before = _cpu_s(brokers)
    events = (make_event(f"bench-{k}", image_bytes=image) for k, image in enumerate(images))
    collected = collector.collect(
        send_events(producer, topic, events, rate), timeout_s, progress=label
    )
    latencies = [seconds * 1000 for seconds in collected.latencies_s]
    answered = len(collected.answers)
    cpu = None
    rss = None
    if proc is not None:
        cpu = (sum(proc.cpu_times()[:2]) - cpu_before) / max(1, answered) * 1000
        rss = proc.memory_info().rss / 2**20
    broker_ms = (_cpu_s(brokers) - broker_before) / max(1, answered) * 1000 if brokers else None
    return StreamResult(
        label=label,
        events=len(collected.sent_at),
        verdicts=answered,
        seconds=round(collected.seconds, 3),
        events_per_s=round(collected.per_s, 2),
        p50_ms=round(statistics.median(latencies), 1) if latencies else float("nan"),
        p95_ms=round(percentile(latencies, 95), 1),
        p99_ms=round(percentile(latencies, 99), 1),
        rate="burst" if rate is None else f"{rate:.0f}/s",
        cpu_s_per_1000=None if cpu is None else round(cpu, 3),
        rss_mb=None if rss is None else round(rss, 1),
        broker_cpu_ms=None if broker_ms is None else round(broker_ms, 3),
    )


def _cpu_s(processes: Sequence[psutil.Process]) -> float:
    """User and system CPU seconds of these processes so far."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def server_environment(stack: Stack, server: str, model: str) -> dict[str, str]:
    """The consumer's settings for one of the stack's model servers."""
    prefix = f"GEOVERDICT_{server.upper()}_"
    if server == "triton":
        url, key_file = stack.triton.url(), stack.triton.inference_key_file
    else:
        url, key_file = stack.torchserve.url("inference"), stack.torchserve_key_file
    return {
        "GEOVERDICT_MODEL_SERVER": server,
        f"{prefix}URL": url,
        f"{prefix}KEY_FILE": str(key_file),
        f"{prefix}MODEL_NAME": model,
    }


def consumer_process(
    stack: Stack, topics: Topics, server: str, model: str, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`geoverdict consume` as its own process (so its CPU and memory can be measured),
    talking to `server` (torchserve or triton)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GEOVERDICT_")},
        **topics.environment(),
        "GEOVERDICT_REDIS_URL": stack.redis_url,
        **server_environment(stack, server, model),
        "GEOVERDICT_METRICS_PORT": "0",
        "GEOVERDICT_METRICS_HOST": "127.0.0.1",
        **extra_env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "geoverdict", "consume"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def naive_process(
    stack: Stack, topics: Topics, model: str, expected: int
) -> subprocess.Popen[bytes]:
    """The naive consumer as its own process."""
    code = (
        "import sys, pathlib; from benchmarks.naive import run_naive; "
        "run_naive(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], "
        "pathlib.Path(sys.argv[6]), int(sys.argv[7]), 900.0)"
    )
    url = f"{stack.torchserve.url('inference')}/predictions/{model}"
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            stack.kafka_bootstrap,
            topics.input,
            topics.verdicts,
            topics.group,
            url,
            str(stack.torchserve_key_file),
            str(expected),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the consumer drains and commits), then wait."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
