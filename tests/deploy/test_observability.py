"""Every series that a dashboard panel or an alert rule reads really exists: a real Prometheus
scrapes the real consumer, TorchServe, Triton and Redis exporter while events flow
(integration)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from geoverdict_stack import process
from geoverdict_stack.kafka import create_topics
from geoverdict_stack.ports import free_ports, is_listening
from geoverdict_stack.stack import Stack
from tests.deploy.promql import metric_names
from tests.repo import REPO_ROOT
from tests.service.conftest import (
    collect,
    events_for,
    jpeg,
    publish_events,
    running,
    service_settings,
)
from tests.stack_fixtures import add_fixture_model, triton_load

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((REPO_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
# Exported by TorchServe only on a machine with a GPU (the GPU variant's panel).
GPU_ONLY = {"GPUUtilization", "GPUMemoryUtilization"}


def used_expressions() -> dict[str, str]:
    """Every PromQL expression of the alert rules and dashboards, by where it is used."""
    exprs = {}
    for rule in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"][0]["rules"]:
        exprs[f"alert {rule['alert']}"] = rule["expr"]
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                exprs[f"{path.stem}: {panel['title']} ({target['refId']})"] = target["expr"]
    return exprs


def _get(url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def prometheus(
    stack: Stack, fixture_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus scraping a consumer that has handled healthy and poison events."""
    binary, exporter = shutil.which("prometheus"), shutil.which("prometheus-redis-exporter")
    if binary is None or exporter is None:
        pytest.skip("prometheus / prometheus-redis-exporter not installed (.ci/run installs them)")
    tmp = tmp_path_factory.mktemp("prometheus")
    tag = str(time.monotonic_ns())
    topics = {
        "input_topic": f"obs-in-{tag}",
        "verdict_topic": f"obs-v-{tag}",
        "dead_letter_topic": f"obs-d-{tag}",
        "group_id": f"obs-{tag}",
    }
    settings = service_settings(stack, fixture_model, topics)
    create_topics(stack.kafka_bootstrap, {topics[k]: 2 for k in topics if k != "group_id"})
    prom_port, exporter_port = free_ports(2)
    exporter_proc = process.spawn(
        "redis-exporter",
        [
            exporter,
            "-redis.addr",
            stack.redis.url_for("exporter"),
            "-web.listen-address",
            f"127.0.0.1:{exporter_port}",
        ],
        tmp / "exporter.log",
        tmp,
    )
    # Triton's per-model series exist once a model is loaded (the Triton variant's panels).
    add_fixture_model(stack.triton.repository)
    triton_load(stack.triton, "fixture")
    with running(settings) as service:
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
        targets = {
            "geoverdict-consumer": f"127.0.0.1:{service.health_port}",
            "torchserve": stack.torchserve.url("metrics").removeprefix("http://"),
            "triton": stack.triton.url("metrics").removeprefix("http://"),
            "redis": f"127.0.0.1:{exporter_port}",
            "prometheus": f"127.0.0.1:{prom_port}",
        }
        for job in config["scrape_configs"]:  # same job names, local targets
            job.pop("dns_sd_configs", None)
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom = process.spawn(
            "prometheus",
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp / "prometheus.log",
            tmp,
        )
        try:
            process.wait_until(lambda: is_listening(prom_port), timeout=30)
            # Healthy events, a poison message, then TorchServe's own 4xx and 5xx paths.
            events = events_for([jpeg(5000 + i) for i in range(12)], claim=(-33.8688, 151.2093))
            publish_events(stack, settings.kafka.input_topic, [*events, b"not json"])
            assert len(collect(stack, settings.kafka.verdict_topic, len(events))) == len(events)
            url = f"{stack.torchserve.url('inference')}/predictions/{fixture_model}"
            _get(url, token=None, body=b"x")  # 4xx: no token
            _get(url, token=stack.torchserve_keys()["inference"], body=b"CRASH")  # 5xx
            time.sleep(6)  # a few scrapes and rule evaluations
            yield f"http://127.0.0.1:{prom_port}"
        finally:
            process.stop(prom)
            process.stop(exporter_proc)


def _series_exists(prometheus: str, name: str) -> bool:
    query = urllib.parse.urlencode({"match[]": name, "start": str(time.time() - 600)})
    status, body = _get(f"{prometheus}/api/v1/series?{query}")
    return status == 200 and bool(json.loads(body)["data"])


def test_every_dashboard_and_alert_series_exists(prometheus: str) -> None:
    missing = {}
    for where, expr in used_expressions().items():
        for name in sorted(metric_names(expr) - GPU_ONLY):
            if not _series_exists(prometheus, name):
                missing.setdefault(name, []).append(where)
    assert not missing, json.dumps(missing, indent=1)


def test_all_scrape_targets_are_up(prometheus: str) -> None:
    query = urllib.parse.urlencode({"query": "up"})
    _, body = _get(f"{prometheus}/api/v1/query?{query}")
    up = {r["metric"]["job"]: r["value"][1] for r in json.loads(body)["data"]["result"]}
    assert up == {
        "geoverdict-consumer": "1",
        "torchserve": "1",
        "triton": "1",
        "redis": "1",
        "prometheus": "1",
    }


def test_promtool_check_metrics_accepts_the_consumer_output(prometheus: str, stack: Stack) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    query = urllib.parse.urlencode({"query": 'up{job="geoverdict-consumer"}'})
    _, body = _get(f"{prometheus}/api/v1/query?{query}")
    instance = json.loads(body)["data"]["result"][0]["metric"]["instance"]
    _, metrics = _get(f"http://{instance}/metrics")
    result = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert b"geoverdict_end_to_end_latency_seconds_bucket" in metrics


def test_promql_parser_finds_metric_names() -> None:
    expr = 'sum by (reason) (rate(geoverdict_dead_letters_total{reason="x"}[5m])) / scalar(up)'
    assert metric_names(expr) == {"geoverdict_dead_letters_total", "up"}
    assert metric_names("deriv(sum(lag)[10m:1m]) > 0 and redis_up == 0") == {"lag", "redis_up"}
