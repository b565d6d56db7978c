"""docker-compose for the tests: the files, a deployment's passwords, `config` of a set of files
(validated and merged by Compose itself, without an engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.repo import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
GPU = REPO_ROOT / "docker-compose.gpu.yml"
SECURE = REPO_ROOT / "docker-compose.secure.yml"
TRITON = REPO_ROOT / "docker-compose.triton.yml"
TRITON_GPU = REPO_ROOT / "docker-compose.triton-gpu.yml"
TRITON_SECURE = REPO_ROOT / "docker-compose.triton-secure.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
# A deployment's .env: the passwords docker compose refuses to start without.
TEST_SECRETS = {
    "REDIS_PASSWORD": "ab" * 16,
    "REDIS_EXPORTER_PASSWORD": "cd" * 16,
    "GRAFANA_ADMIN_PASSWORD": "ef" * 12,
    "KAFKA_ADMIN_PASSWORD": "a1" * 16,
    "KAFKA_CONSUMER_PASSWORD": "b2" * 16,
    "KAFKA_CLIENT_PASSWORD": "c3" * 16,
}


def compose_command() -> list[str]:
    """`docker compose` (v2) or docker-compose (v1); the test skips where neither is installed."""
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


def config(
    files: list[Path], secrets: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`compose config` of these files with .env.example and these passwords in the environment."""
    cmd = [*compose_command(), "--env-file", str(ENV_EXAMPLE)]
    for path in files:
        cmd += ["-f", str(path)]
    env = {k: v for k, v in os.environ.items() if k not in TEST_SECRETS} | secrets
    return subprocess.run(
        [*cmd, "config", *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env
    )


def merged(files: list[Path]) -> dict[str, Any]:
    """The services as Compose runs them: the files merged, variables filled in."""
    result = config(files, TEST_SECRETS)
    if result.returncode != 0:
        raise RuntimeError(f"compose config failed:\n{result.stderr}")
    return dict(yaml.safe_load(result.stdout)["services"])


def active(services: dict[str, Any]) -> dict[str, Any]:
    """The services `up` starts: those in no profile (none of this project's is activated)."""
    return {name: s for name, s in services.items() if not s.get("profiles")}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A merged service's environment as a mapping (Compose may print it as a list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}
