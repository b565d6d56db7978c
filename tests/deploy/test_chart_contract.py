"""The chart's consumer, run: the consumer container that `helm template` renders (its environment
and its command, the image's entrypoint where it gives none) starts as a local `geoverdict
consume` against the local stack and becomes ready, with each model server. Only what a cluster
provides is swapped: the Secrets for files and values of the stack's keys, the Services' host
names for the stack's addresses, the metrics port for a free one. The variable names stay as
rendered, so a setting the chart names wrongly (or one the service renamed) fails here rather
than on a cluster (integration)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from geoverdict_stack.ports import HOST, free_ports
from geoverdict_stack.stack import Stack
from tests.deploy.helm import CHART, find, render
from tests.repo import REPO_ROOT
from tests.service import conftest as service_fixtures
from tests.stack_fixtures import Served

pytestmark = pytest.mark.integration

topics = service_fixtures.topics  # fresh topics and group per test
# The values an operator starts from for each server; the chart's in-cluster Redis has no
# password, the stack's has users, so both name a Redis Secret (as the GPU values do).
VALUES = {"torchserve": (), "triton": (CHART / "ci" / "triton-values.yaml",)}
REDIS_SECRET = "geoverdict-redis"
CONSUMER_IMAGE = REPO_ROOT / "deploy" / "consumer" / "Dockerfile"
READY_WITHIN_S = 45.0


@dataclass
class LocalCluster:
    """What a cluster gives the consumer's pod, from the local stack."""

    secrets: dict[str, dict[str, str]]  # Secret -> key -> content
    services: dict[str, str]  # http://<service>:<port> -> the stack's URL
    files: Path  # where mounted Secrets are written

    def mount(self, spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Path]:
        """Each Secret volume the container mounts, written locally: mount path -> folder."""
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounted = {}
        for mount in container["volumeMounts"]:
            secret = volumes[mount["name"]].get("secret")
            if secret is None:
                continue  # an emptyDir: the local process has its own /tmp
            folder = self.files / mount["name"]
            folder.mkdir(parents=True)
            for item in secret["items"]:
                (folder / item["path"]).write_text(self.secrets[secret["secretName"]][item["key"]])
            mounted[mount["mountPath"]] = folder
        return mounted

    def value(self, env: dict[str, Any], mounted: dict[str, Path]) -> str:
        """One rendered variable's value on this machine."""
        if "valueFrom" in env:
            ref = env["valueFrom"]["secretKeyRef"]  # the chart takes nothing else from the cluster
            return self.secrets[ref["name"]][ref["key"]]
        value = str(env["value"])
        for path, folder in mounted.items():
            if value.startswith(f"{path}/"):
                return str(folder / value.removeprefix(f"{path}/"))
        return self.services.get(value, value)


def service_urls(docs: list[dict[str, Any]], served: Served) -> dict[str, str]:
    """The chart's URL of the model server's Service -> the stack's server."""
    service = find(docs, "Service", served.server)
    port = {"torchserve": "inference", "triton": "http"}[served.server]  # not the metrics
    (number,) = [p["port"] for p in service["spec"]["ports"] if p["name"] == port]
    return {f"http://{service['metadata']['name']}:{number}": served.url}


def image_entrypoint() -> list[str]:
    """The consumer image's ENTRYPOINT."""
    (line,) = [ln for ln in CONSUMER_IMAGE.read_text().splitlines() if ln.startswith("ENTRYPOINT")]
    return list(json.loads(line.removeprefix("ENTRYPOINT")))


def readiness(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def test_the_chart_s_consumer_starts_and_becomes_ready(
    stack: Stack, fixture_server: Served, topics: dict[str, str], tmp_path: Path
) -> None:
    served = fixture_server
    docs = render(
        VALUES[served.server],
        (
            # What an operator sets for their cluster: its brokers, topics, group and model.
            f"config.kafka.bootstrap_servers={stack.kafka_bootstrap}",
            *(f"config.kafka.{k}={v}" for k, v in topics.items() if k != "group_id"),
            f"config.consumer.group_id={topics['group_id']}",
            f"config.{served.server}.model_name={served.model}",
            f"redis.existingSecret={REDIS_SECRET}",
            "redis.existingSecretKey=url",
        ),
    )
    spec = find(docs, "Deployment", "consumer")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    cluster = LocalCluster(
        secrets={
            "geoverdict-inference-key": {"key_file.json": served.key_file.read_text()},
            REDIS_SECRET: {"url": stack.redis_url},
        },
        services=service_urls(docs, served),
        files=tmp_path / "secrets",
    )
    mounted = cluster.mount(spec, container)
    env = {e["name"]: cluster.value(e, mounted) for e in container["env"]}
    (metrics_port,) = free_ports(1)
    env |= {"GEOVERDICT_METRICS_PORT": str(metrics_port), "GEOVERDICT_METRICS_HOST": HOST}
    base = {k: os.environ[k] for k in ("PATH", "LANG", "PYTHONPATH") if k in os.environ}
    argv = [*container.get("command", image_entrypoint()), *container.get("args", [])]
    argv[0] = str(Path(sys.executable).parent / argv[0])  # the image's PATH: this environment
    log = tmp_path / "consume.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env={**base, "HOME": str(tmp_path), **env}, stdout=out, stderr=subprocess.STDOUT
        )
    probe = container["readinessProbe"]["httpGet"]["path"]
    url, state = f"http://{HOST}:{metrics_port}{probe}", None
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline and proc.poll() is None:
            state = readiness(url)
            if state and state.get("ready"):
                break
            time.sleep(0.25)
        assert state and state.get("ready"), f"{state}; exit {proc.poll()}:\n{log.read_text()}"
        assert state["partitions_assigned"] and state["model_server"], state
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=float(env["GEOVERDICT_SHUTDOWN_TIMEOUT_S"]) + 10)
    assert code == 0, log.read_text()
