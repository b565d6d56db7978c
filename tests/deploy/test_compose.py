"""docker-compose.yml (and its GPU override) is valid Compose, checked without an engine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.repo import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
GPU = REPO_ROOT / "docker-compose.gpu.yml"


def _compose() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip("neither `docker compose` nor docker-compose is installed (.ci/run installs it)")


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, GPU]], ids=["cpu", "gpu"])
def test_compose_config_validates(files: list[Path]) -> None:
    cmd = [*_compose(), "--env-file", str(REPO_ROOT / ".env.example")]
    for path in files:
        cmd += ["-f", str(path)]
    result = subprocess.run([*cmd, "config", "-q"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_is_scalable_and_keeps_no_secrets() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {
        "kafka",
        "kafka-init",
        "redis",
        "torchserve",
        "consumer",
        "prometheus",
        "grafana",
    } <= set(services)
    consumer = services["consumer"]
    # --scale consumer=N needs no fixed container name and no fixed host port.
    assert "container_name" not in consumer and "ports" not in consumer
    assert consumer["depends_on"]["torchserve"]["condition"] == "service_healthy"
    assert consumer["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if any(word in key.upper() for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"
    assert set(doc["volumes"]) >= {"kafka-data", "torchserve-keys"}


def test_consumer_image_has_no_torch() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "consumer" / "Dockerfile").read_text()
    assert (
        '".[service]"' in dockerfile and "torch" not in dockerfile.split("RUN", 1)[1].split("&&")[0]
    )
