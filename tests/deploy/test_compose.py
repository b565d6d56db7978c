"""docker-compose.yml (and its overrides) is valid Compose and secure by default, checked
without an engine: what it publishes, what each container may do, where secrets come from, and
that the Triton variant replaces TorchServe for the consumer."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.compose import (
    COMPOSE,
    ENV_EXAMPLE,
    GPU,
    SECURE,
    TEST_SECRETS,
    TRITON,
    TRITON_GPU,
    TRITON_SECURE,
    active,
    config,
    environment,
    merged,
)
from tests.repo import REPO_ROOT

# Built here from a base image whose digest could not be checked (docs/security.md).
BUILT = {"torchserve", "consumer", "triton", "consumer-triton"}
VARIANTS = {
    "cpu": [COMPOSE],
    "gpu": [COMPOSE, GPU],
    "secure": [COMPOSE, SECURE],
    "triton": [COMPOSE, TRITON],
    "triton-gpu": [COMPOSE, TRITON, TRITON_GPU],
    "triton-secure": [COMPOSE, SECURE, TRITON, TRITON_SECURE],
}
SERVER_PREFIXES = ("GEOVERDICT_TORCHSERVE_", "GEOVERDICT_TRITON_", "GEOVERDICT_MODEL_SERVER")


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


@pytest.mark.parametrize("files", list(VARIANTS.values()), ids=list(VARIANTS))
def test_compose_config_validates(files: list[Path]) -> None:
    result = config(files, TEST_SECRETS, "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_passwords() -> None:
    # .env.example holds no example password that could end up in production.
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert all(example[name] == "" for name in TEST_SECRETS)
    result = config([COMPOSE], {}, "-q")
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
    overrides = [yaml.safe_load(p.read_text())["services"] for p in (SECURE, TRITON, TRITON_SECURE)]
    for name, service in [item for s in (found, *overrides) for item in s.items()]:
        for key, value in (service.get("environment") or {}).items():
            if any(word in key.upper() for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"
            assert "change-me" not in str(value)


@pytest.mark.parametrize("path", [COMPOSE, TRITON], ids=["compose", "triton"])
def test_only_this_host_can_reach_what_is_published(path: Path) -> None:
    for name, service in yaml.safe_load(path.read_text())["services"].items():
        for port in service.get("ports", []):
            # HOST:PUBLISHED:TARGET, HOST a literal or ${VARIABLE:-default}
            bind = re.match(r"(\$\{\w+:-([^}]*)\}|[^:]+):", str(port))
            assert bind is not None, f"{name} publishes {port} on every interface"
            host = bind.group(2) if bind.group(2) is not None else bind.group(1)
            assert host == "127.0.0.1", f"{name} publishes {port} beyond this host"


def test_every_container_is_hardened_and_limited() -> None:
    triton = yaml.safe_load(TRITON.read_text())["services"]
    added = {name: s for name, s in triton.items() if name not in services()}
    assert set(added) == {"triton", "consumer-triton"}
    for name, service in (services() | added).items():
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
    # its base by default: the build argument a stand-in replaces only where asked to
    assert re.search(r"^ARG BASE_IMAGE=\S+@sha256:[0-9a-f]{64}$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", dockerfile, re.MULTILINE)


def test_the_consumer_gets_the_inference_key_and_no_other() -> None:
    found = services()
    consumer_volumes = [str(v) for v in found["consumer"]["volumes"]]
    assert consumer_volumes == ["torchserve-inference-key:/keys:ro"]
    torchserve = found["torchserve"]
    # TorchServe's own key file (all keys) lives on a tmpfs of its container, shared with no one.
    assert "/home/model-server/keys" in torchserve["tmpfs"]
    assert "torchserve-inference-key:/home/model-server/inference-key" in torchserve["volumes"]
    dockerfile = (REPO_ROOT / "deploy" / "torchserve" / "Dockerfile").read_text()
    assert "geoverdict_modelserver.torchserve_entrypoint" in dockerfile
    assert "--inference-key" in dockerfile


def test_the_model_server_images_install_their_package_never_the_stack() -> None:
    # What runs inside the images is geoverdict_modelserver; the launcher stays outside.
    for image in ("torchserve", "triton"):
        dockerfile = (REPO_ROOT / "deploy" / image / "Dockerfile").read_text()
        assert "COPY deploy/geoverdict_modelserver " in dockerfile, image
        assert "geoverdict_stack" not in dockerfile and "services" not in dockerfile, image
        # no `geoverdict` command whose package is not there
        assert 'rm -rf /tmp/geoverdict "$(command -v geoverdict)"' in dockerfile, image
    entrypoint = (REPO_ROOT / "deploy" / "triton" / "entrypoint.sh").read_text()
    assert "python3 -m geoverdict_modelserver.triton_entrypoint" in entrypoint
    health = services()["torchserve"]["healthcheck"]["test"]
    assert health == ["CMD", "python", "-m", "geoverdict_modelserver.torchserve_health"]


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
        resource = re.search(r"--(topic|group|transactional-id) \"\$\$(\w+)\"|--(cluster)", line)
        assert principal and resource, line
        kind, name = (resource[1], resource[2]) if resource[1] else ("cluster", "CLUSTER")
        prefixed = "--resource-pattern-type prefixed" in line
        for camel in re.findall(r"--operation (\w+)", line):
            operation = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", camel).upper()  # IdempotentWrite
            granted.add((principal[1], operation, kind, name, prefixed))
    names = {"INPUT": "i", "VERDICTS": "v", "DEAD": "d", "GROUP": "g", "TXN_PREFIX": "t"}
    names["CLUSTER"] = acls.CLUSTER
    expected = {
        (g.principal, g.operation, g.resource, {v: k for k, v in names.items()}[g.name], g.prefixed)
        for g in acls.grants("i", "v", "d", group="g", transactional_prefix="t")
    }
    assert granted == expected
    # the prefix granted is the one the consumer is given
    init_env, consumer_env = (
        secure["kafka-init"]["environment"],
        services()["consumer"]["environment"],
    )
    assert init_env["TXN_PREFIX"] == consumer_env["GEOVERDICT_TRANSACTIONAL_ID_PREFIX"]

    env = secure["kafka"]["environment"]
    local = KafkaServer(Path("/nonexistent"), 1, 2, sasl_port=3, ssl_port=4)
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == AUTHORIZER
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert "User:admin" in env["KAFKA_SUPER_USERS"].split(";")
    assert "EXTERNAL:SASL_SSL" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert local.ports()["kafka sasl_ssl"] == 4  # the local stack has the same listener kind
    assert secure["consumer"]["environment"]["GEOVERDICT_KAFKA_SASL_USERNAME"] == acls.CONSUMER_USER


def test_torchserve_loads_models_from_its_store_only() -> None:
    from geoverdict_modelserver import torchserve_config
    from geoverdict_stack.torchserve import TorchServeServer

    image = torchserve_config.properties()
    assert image["allowed_urls"] == "file:///home/model-server/model-store/.*"
    assert image["enable_model_api"] == "false"
    assert image["disable_token_authorization"] == "false"
    store = Path("/srv/store")
    local = TorchServeServer(Path("/nonexistent"), 1, 2, 3, store).properties()
    assert local["allowed_urls"] == f"file://{store.resolve()}/.*"  # the same rule, its store


# -- Triton in TorchServe's place (docker-compose.triton.yml) -------------------------------------
def consumers(services: dict[str, Any]) -> dict[str, Any]:
    """The services that run `geoverdict consume` (the consumer image)."""
    return {n: s for n, s in services.items() if s["image"].startswith("geoverdict/consumer:")}


def dockerfile_instruction(path: Path, name: str) -> list[str]:
    """A Dockerfile's exec-form instruction (ENTRYPOINT, CMD) as a list."""
    text = path.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} [")]
    return list(json.loads(line.removeprefix(name)))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_runs_one_model_server_and_its_consumers_accept_their_settings(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoverdict_service.settings import ENV_PREFIX, load_service_settings

    found = active(merged(VARIANTS[name]))
    server = "triton" if name.startswith("triton") else "torchserve"
    other = {"triton": "torchserve", "torchserve": "triton"}[server]
    assert server in found and other not in found, sorted(found)
    (consumer,) = consumers(found).values()
    env = environment(consumer)
    assert not [key for key in env if key.startswith(f"GEOVERDICT_{other.upper()}_")]
    assert env.get("GEOVERDICT_MODEL_SERVER", "torchserve") == server
    assert consumer["depends_on"][server]["condition"] == "service_healthy"
    # The consumer would start on it: one model server's settings, none of the other's.
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_service_settings()
    assert settings.model_server == server
    assert settings.server.url == f"http://{server}:{8000 if server == 'triton' else 8080}"


@pytest.mark.parametrize("name", ["triton", "triton-secure"])
def test_the_triton_consumer_is_the_consumer_but_for_its_model_server(name: str) -> None:
    services = merged(VARIANTS[name])
    base, triton = services["consumer"], services["consumer-triton"]
    own = {"depends_on", "environment", "volumes", "networks", "profiles"}
    assert {k: v for k, v in base.items() if k not in own} == {
        k: v for k, v in triton.items() if k not in own
    }

    def shared(service: dict[str, Any]) -> dict[str, str]:
        return {k: v for k, v in environment(service).items() if not k.startswith(SERVER_PREFIXES)}

    assert shared(base) == shared(triton)
    assert set(base["depends_on"]) - {"torchserve"} == set(triton["depends_on"]) - {"triton"}
    # Prometheus' consumer job and `docker compose exec consumer` find it by that name.
    assert triton["networks"]["default"]["aliases"] == ["consumer"]


def test_triton_reads_its_secret_from_the_volume_the_consumer_mounts_read_only() -> None:
    services = yaml.safe_load(TRITON.read_text())["services"]
    triton, consumer = services["triton"], services["consumer-triton"]
    command = triton["command"]
    assert "entrypoint" not in triton  # the image's: deploy/triton/entrypoint.sh
    # No secret here: the entrypoint adds the restriction with the key file's secret.
    assert not [arg for arg in command if "restricted" in arg or "Bearer" in arg]
    key_file = Path(command[command.index("--inference-key") + 1])
    (volume,) = [v for v in triton["volumes"] if v.endswith(f":{key_file.parent}")]
    name = volume.split(":", 1)[0]
    assert consumer["volumes"] == [f"{name}:/keys:ro"]
    assert consumer["environment"]["GEOVERDICT_TRITON_KEY_FILE"] == f"/keys/{key_file.name}"
    assert not [k for k in consumer["environment"] if "TOKEN" in k]
    # The repository is written at each start on a tmpfs; the root filesystem stays read-only.
    assert command[command.index("--repository") + 1] in triton["tmpfs"]
    assert triton["read_only"] is True
    # The image's own defaults are the same arguments (`docker run` without compose).
    dockerfile = REPO_ROOT / "deploy" / "triton" / "Dockerfile"
    assert dockerfile_instruction(dockerfile, "ENTRYPOINT") == ["/opt/geoverdict/entrypoint.sh"]
    assert dockerfile_instruction(dockerfile, "CMD") == command
    healthcheck = shlex.join(triton["healthcheck"]["test"])
    model = consumer["environment"]["GEOVERDICT_TRITON_MODEL_NAME"]
    # the consumer's model, not the server's overall readiness (false after any failed load)
    assert f"/v2/models/{model}/ready" in healthcheck and "Bearer" not in healthcheck


def test_prometheus_scrapes_the_model_server_of_each_variant() -> None:
    jobs = {
        job["job_name"]: job
        for job in yaml.safe_load(
            (REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
        )["scrape_configs"]
    }
    command = yaml.safe_load(TRITON.read_text())["services"]["triton"]["command"]
    metrics_port = int(command[command.index("--metrics-port") + 1])
    for job, port in (("torchserve", 8082), ("triton", metrics_port)):
        # By DNS: the variant's other model server is no target at all, not a target down.
        (sd,) = jobs[job]["dns_sd_configs"]
        assert (sd["names"], sd["port"]) == ([job], port)
    assert jobs["geoverdict-consumer"]["dns_sd_configs"][0]["names"] == ["consumer"]


def test_the_brokers_allow_the_longest_transaction_the_consumer_may_ask_for() -> None:
    from geoverdict_service.settings import ServiceSettings
    from geoverdict_stack.kafka import TRANSACTION_MAX_TIMEOUT_MS

    limit = next(
        m.le
        for m in ServiceSettings.model_fields["transaction_timeout_ms"].metadata
        if hasattr(m, "le")
    )
    compose = services()["kafka"]["environment"]["KAFKA_TRANSACTION_MAX_TIMEOUT_MS"]
    # a longer timeout than the broker's maximum fails InitProducerId on every assignment
    assert limit == int(compose) == TRANSACTION_MAX_TIMEOUT_MS
