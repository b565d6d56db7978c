"""Metrics and the health endpoints: /metrics, /healthz, /readyz."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from geoverdict_common import contract
from geoverdict_service.metrics import DEAD_LETTER_REASONS, HealthServer, Metrics, loop_alive

Checks = dict[str, bool]


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body, also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Starts a HealthServer on a free loopback port; returns its base URL."""
    servers: list[HealthServer] = []

    def start(
        metrics: Metrics,
        alive: Callable[[], bool] = lambda: True,
        ready: Callable[[], tuple[bool, Checks]] = lambda: (True, {}),
    ) -> str:
        server = HealthServer(metrics, "127.0.0.1", 0, alive=alive, ready=ready)
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def busy_metrics() -> Metrics:
    """Metrics after a little traffic, every kind of metric touched."""
    metrics = Metrics()
    metrics.events.inc(3)
    metrics.verdicts.labels(cache="miss").inc(2)
    metrics.dead_letters.labels(reason="schema_violation").inc()
    metrics.inference_latency.observe(0.042)
    metrics.batch_size.observe(3)
    metrics.lag.labels(topic="geoverdict.images", partition="0").set(12)
    metrics.model.info({"version": "unit-0123abcd"})
    metrics.last_loop.set_to_current_time()
    return metrics


def test_metrics_are_served_in_the_prometheus_text_format(serve: Callable[..., str]) -> None:
    status, content_type, body = get(serve(busy_metrics()) + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    text = body.decode()
    assert "geoverdict_events_consumed_total 3.0" in text
    assert 'geoverdict_verdicts_produced_total{cache="miss"} 2.0' in text
    assert 'geoverdict_consumer_lag{partition="0",topic="geoverdict.images"} 12.0' in text
    assert 'geoverdict_model_info{version="unit-0123abcd"} 1.0' in text
    # Reasons that never happened are there at 0, so rates and alerts work from the start.
    assert 'geoverdict_dead_letters_total{reason="fetch_timeout"} 0.0' in text


def test_metrics_pass_promtool(serve: Callable[..., str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH")
    _, _, body = get(serve(busy_metrics()) + "/metrics")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode() + checked.stderr.decode() == ""  # no lint warnings either


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.events.inc(5)
    assert first.registry.get_sample_value("geoverdict_events_consumed_total") == 5
    assert second.registry.get_sample_value("geoverdict_events_consumed_total") == 0


def test_every_per_image_error_is_a_known_dead_letter_reason() -> None:
    error = json.loads((contract.SCHEMA_DIR / contract.PREDICTION).read_text())["$defs"]["error"]
    codes = error["properties"]["error"]["properties"]["code"]["enum"]
    assert {f"image_{code}" for code in codes} <= set(DEAD_LETTER_REASONS)


def test_healthz_fails_when_the_loop_stalls(serve: Callable[..., str]) -> None:
    metrics = Metrics()
    url = serve(metrics, alive=loop_alive(metrics, stall_after_s=60)) + "/healthz"
    assert get(url)[0] == 503  # the loop never ran
    metrics.last_loop.set_to_current_time()
    assert get(url) == (200, "text/plain", b"ok\n")
    metrics.last_loop.set(time.time() - 61)
    assert get(url) == (503, "text/plain", b"stalled\n")


def test_readyz_reports_each_check(serve: Callable[..., str]) -> None:
    checks = {"partitions_assigned": True, "torchserve": True, "redis": True}
    url = serve(Metrics(), ready=lambda: (all(checks.values()), dict(checks))) + "/readyz"
    status, content_type, body = get(url)
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"ready": True, **checks}
    checks["torchserve"] = False
    status, _, body = get(url)
    assert status == 503
    assert json.loads(body) == {
        "ready": False,
        "partitions_assigned": True,
        "torchserve": False,
        "redis": True,
    }


def test_other_paths_are_not_found(serve: Callable[..., str]) -> None:
    assert get(serve(Metrics()) + "/admin")[0] == 404
