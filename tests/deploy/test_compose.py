"""docker-compose.yml (and its overrides) is valid Compose and secure by default, checked
without an engine: what it publishes, what each container may do, where secrets come from."""

from __future__ import annotations

import os
import re
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
# Built here from a base image whose digest could not be checked (docs/security.md).
BUILT = {"torchserve", "consumer"}


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


def _config(files: list[Path], secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [*_compose(), "--env-file", str(ENV_EXAMPLE)]
    for path in files:
        cmd += ["-f", str(path)]
    env = {k: v for k, v in os.environ.items() if k not in TEST_SECRETS} | secrets
    return subprocess.run(
        [*cmd, "config", "-q"], capture_output=True, text=True, cwd=REPO_ROOT, env=env
    )


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


@pytest.mark.parametrize(
    "files", [[COMPOSE], [COMPOSE, GPU], [COMPOSE, SECURE]], ids=["cpu", "gpu", "secure"]
)
def test_compose_config_validates(files: list[Path]) -> None:
    result = _config(files, TEST_SECRETS)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_passwords() -> None:
    # .env.example holds no example password that could end up in production.
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    assert all(example[name] == "" for name in TEST_SECRETS)
    result = _config([COMPOSE], {})
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr or "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_compose_is_scalable_and_keeps_no_secrets() -> None:
    found = services()
    assert {
        "kafka",
        "kafka-init",
        "redis",
        "torchserve",
        "consumer",
        "prometheus",
        "grafana",
    } <= set(found)
    consumer = found["consumer"]
    # --scale consumer=N needs no fixed container name and no fixed host port.
    assert "container_name" not in consumer and "ports" not in consumer
    assert consumer["depends_on"]["torchserve"]["condition"] == "service_healthy"
    assert consumer["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    for name, service in found.items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key.upper() for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"
            assert "change-me" not in str(value)


def test_only_this_host_can_reach_what_is_published() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            # HOST:PUBLISHED:TARGET, HOST a literal or ${VARIABLE:-default}
            bind = re.match(r"(\$\{\w+:-([^}]*)\}|[^:]+):", str(port))
            assert bind is not None, f"{name} publishes {port} on every interface"
            host = bind.group(2) if bind.group(2) is not None else bind.group(1)
            assert host == "127.0.0.1", f"{name} publishes {port} beyond this host"


def test_every_container_is_hardened_and_limited() -> None:
    for name, service in services().items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        limits = service["deploy"]["resources"]["limits"]
        assert {"memory", "cpus"} <= set(limits), name
        assert service.get("pids_limit", 0) > 0, name
        if name not in {"kafka", "kafka-init"}:  # Kafka's image writes its config at start
            assert service.get("read_only") is True, name


def test_images_are_pinned_by_digest() -> None:
    for name, service in services().items():
        if name in BUILT:
            continue
        assert re.search(r"@sha256:[0-9a-f]{64}$", service["image"]), f"{name}: {service['image']}"
    dockerfile = (REPO_ROOT / "deploy" / "consumer" / "Dockerfile").read_text()
    assert re.search(r"^FROM \S+@sha256:[0-9a-f]{64}$", dockerfile, re.MULTILINE)


def test_the_consumer_gets_the_inference_key_and_no_other() -> None:
    found = services()
    consumer_volumes = [str(v) for v in found["consumer"]["volumes"]]
    assert consumer_volumes == ["torchserve-inference-key:/keys:ro"]
    torchserve = found["torchserve"]
    # TorchServe's own key file (all keys) lives on a tmpfs of its container, shared with no one.
    assert "/home/model-server/keys" in torchserve["tmpfs"]
    assert "torchserve-inference-key:/home/model-server/inference-key" in torchserve["volumes"]
    dockerfile = (REPO_ROOT / "deploy" / "torchserve" / "Dockerfile").read_text()
    assert "geoverdict_stack.torchserve_entrypoint" in dockerfile
    assert "--inference-key" in dockerfile


def test_redis_has_no_default_user_and_the_consumer_signs_in() -> None:
    found = services()
    redis_command = "\n".join(found["redis"]["command"])
    assert "--aclfile" in redis_command
    acl = (REPO_ROOT / "deploy" / "geoverdict_stack" / "resources" / "redis-users.acl").read_text()
    assert "user default off" in acl
    assert re.search(r"^user geoverdict on .*~geoverdict:\*", acl, re.MULTILINE)
    url = found["consumer"]["environment"]["GEOVERDICT_REDIS_URL"]
    assert url.startswith("redis://geoverdict:${REDIS_PASSWORD")


def test_privacy_defaults_in_compose() -> None:
    env = services()["consumer"]["environment"]
    assert env["GEOVERDICT_DEAD_LETTER_PAYLOAD"].endswith(":-reference}")
    assert env["GEOVERDICT_MIN_PRECISION_KM"].endswith(":-5}")


def test_consumer_image_has_no_torch_and_no_training_code() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "consumer" / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements/service.lock" in dockerfile
    assert "COPY training" not in dockerfile
    assert '! python -c "import torch"' in dockerfile


def test_the_secure_profile_grants_what_the_local_stack_enforces() -> None:
    from geoverdict_stack import acls
    from geoverdict_stack.kafka import AUTHORIZER, KafkaServer

    secure = yaml.safe_load(SECURE.read_text())["services"]
    script = "\n".join(secure["kafka-init"]["command"])
    granted = set()
    for line in script.splitlines():
        if not line.strip().startswith("acl --allow-principal"):
            continue
        principal = re.search(r"User:(\w+)", line)
        resource = re.search(r"--(topic|group) \"\$\$(\w+)\"", line)
        assert principal and resource, line
        for operation in re.findall(r"--operation (\w+)", line):
            granted.add((principal[1], operation.upper(), resource[1], resource[2]))
    names = {"INPUT": "i", "VERDICTS": "v", "DEAD": "d", "GROUP": "g"}
    expected = {
        (g.principal, g.operation, g.resource, {v: k for k, v in names.items()}[g.name])
        for g in acls.grants("i", "v", "d", group="g")
    }
    assert granted == expected

    env = secure["kafka"]["environment"]
    local = KafkaServer(Path("/nonexistent"), 1, 2, sasl_port=3, ssl_port=4)
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == AUTHORIZER
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert "User:admin" in env["KAFKA_SUPER_USERS"].split(";")
    assert "EXTERNAL:SASL_SSL" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert local.ports()["kafka sasl_ssl"] == 4  # the local stack has the same listener kind
    assert secure["consumer"]["environment"]["GEOVERDICT_KAFKA_SASL_USERNAME"] == acls.CONSUMER_USER


def test_torchserve_loads_models_from_its_store_only() -> None:
    from geoverdict_stack import resources
    from geoverdict_stack.torchserve import TorchServeServer, read_properties

    image = read_properties(resources.text(resources.TORCHSERVE_PROPERTIES))
    assert image["allowed_urls"] == "file:///home/model-server/model-store/.*"
    assert image["enable_model_api"] == "false"
    assert image["disable_token_authorization"] == "false"
    store = Path("/srv/store")
    local = TorchServeServer(Path("/nonexistent"), 1, 2, 3, store).properties()
    assert local["allowed_urls"] == f"file://{store.resolve()}/.*"  # the same rule, its store
