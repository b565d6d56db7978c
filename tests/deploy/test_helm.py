"""The Helm chart (deploy/helm/geoverdict), checked without a cluster: `helm lint`, then
`helm template` of its variants (defaults, GPU, KEDA, Triton) validated against Kubernetes'
schemas and the CRDs in schemas/, and what an operator relies on in the rendered manifests."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from geoverdict_service.settings import (
    ENV_PREFIX,
    FetchSettings,
    KafkaSettings,
    ProvenanceSettings,
    ServiceSettings,
    TorchServeSettings,
    TritonSettings,
    load_service_settings,
)
from tests.deploy.compose import TRITON
from tests.deploy.helm import CHART, VARIANTS, find, helm, render, template_args
from tests.deploy.helm import container as first_container
from tests.deploy.manifests import problems
from tests.repo import REPO_ROOT

SETTINGS: dict[str, type[BaseSettings]] = {
    "kafka": KafkaSettings,
    "torchserve": TorchServeSettings,
    "triton": TritonSettings,
    "consumer": ServiceSettings,
}
PREFIXES = {"kafka": "KAFKA_", "torchserve": "TORCHSERVE_", "triton": "TRITON_", "consumer": ""}
# Settings the chart leaves out on purpose: Triton's entrypoint reads the key-file form, which
# consumers then mount too (a bare token would be a second copy of the secret to keep equal).
# A trust-anchor file is mounted by the operator (no chart value yet).
UNREACHED = {"GEOVERDICT_TRITON_TOKEN", "GEOVERDICT_PROVENANCE_C2PA_TRUST_ANCHORS"}
# Chart defaults chosen on purpose against the service's: a cluster's brokers are never on
# localhost, and dead letters keep no image bytes in production (as in docker-compose).
CHART_OWN_DEFAULTS = {("kafka", "bootstrap_servers"), ("consumer", "dead_letter_payload")}


def chart_keys(section: str) -> dict[str, FieldInfo]:
    """The chart's keys of a section and the settings they set. The consumer's section holds
    the fetch group's too, as `fetch_KEY`: GEOVERDICT_FETCH_KEY, the group's variable."""
    fields = {k: v for k, v in SETTINGS[section].model_fields.items() if k not in SETTINGS}
    if section == "consumer":
        del fields["fetch"], fields["provenance"]
        fields |= {f"fetch_{k}": v for k, v in FetchSettings.model_fields.items()}
        fields |= {f"provenance_{k}": v for k, v in ProvenanceSettings.model_fields.items()}
    return fields


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(VARIANTS[request.param])


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(values) for name, values in VARIANTS.items()}


def consumer_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return first_container(docs, "consumer")


def pod(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return dict(find(docs, "Deployment", component)["spec"]["template"]["spec"])


def setting_names() -> set[str]:
    names = set()
    for section in SETTINGS:
        for key in chart_keys(section):  # ServiceSettings' nested groups: their own keys
            names.add(f"{ENV_PREFIX}{PREFIXES[section]}{key}".upper())
    return names


@pytest.mark.parametrize("name", list(VARIANTS))
def test_chart_lints(name: str) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", "1.37.0"]
    for path in VARIANTS[name]:
        args += ["-f", str(path)]
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rendered_manifest_is_valid(variant: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = variant
    assert problems(docs) == [], name
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "NetworkPolicy"} <= kinds
    # The one-node cluster has no Prometheus Operator (its values turn these off).
    assert name == "cluster" or {"ServiceMonitor", "PrometheusRule"} <= kinds
    assert "Secret" not in kinds  # secrets are the user's, by name


def test_lag_scaling_replaces_cpu_scaling(rendered: dict[str, list[dict[str, Any]]]) -> None:
    default, keda = rendered["default"], rendered["keda"]
    assert [d["kind"] for d in default].count("ScaledObject") == 0
    assert find(default, "HorizontalPodAutoscaler", "consumer")["spec"]["maxReplicas"] == 6
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in keda}  # KEDA makes its own
    scaled = find(keda, "ScaledObject", "consumer")["spec"]
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["authenticationRef"]["name"] == "geoverdict-kafka"
    assert trigger["metadata"] == {
        "bootstrapServers": "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096",
        "consumerGroup": "geoverdict",
        "topic": "geoverdict.images",
        "lagThreshold": "500",
        "activationLagThreshold": "0",
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
        "sasl": "scram_sha512",
        "tls": "enable",
    }
    assert scaled["maxReplicaCount"] == 12
    # An autoscaler owns the replica count: an upgrade must not reset it.
    assert "replicas" not in find(keda, "Deployment", "consumer")["spec"]


def test_gpu_variant_asks_for_gpus_on_gpu_nodes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = find(rendered["gpu"], "Deployment", "torchserve")["spec"]["template"]["spec"]
    torchserve = pod["containers"][0]
    assert torchserve["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert torchserve["image"] == "geoverdict/torchserve:0.1.0-gpu"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["initContainers"][0]["image"].endswith("models:geoverdict-3f0612745a")
    default = find(rendered["default"], "Deployment", "torchserve")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in default["containers"][0]["resources"]["limits"]


def test_consumer_drains_before_it_is_killed() -> None:
    for timeout, grace in ((30, 40), (92.5, 103)):
        docs = render(sets=(f"config.consumer.shutdown_timeout_s={timeout}",))
        spec = find(docs, "Deployment", "consumer")["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] == grace > math.ceil(timeout)
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert float(env["GEOVERDICT_SHUTDOWN_TIMEOUT_S"]) == timeout


def test_consumer_probes_health_and_readiness(rendered: dict[str, list[dict[str, Any]]]) -> None:
    container = consumer_container(rendered["default"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_every_pod_runs_unprivileged(variant: tuple[str, list[dict[str, Any]]]) -> None:
    for workload in (d for d in variant[1] if d["kind"] in {"Deployment", "Job"}):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
    consumer = find(variant[1], "Deployment", "consumer")["spec"]["template"]["spec"]
    assert consumer["securityContext"]["runAsUser"] == 10001


def test_consumers_get_the_inference_key_alone(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    consumer = find(docs, "Deployment", "consumer")["spec"]["template"]["spec"]
    secrets = [v["secret"]["secretName"] for v in consumer["volumes"] if "secret" in v]
    assert secrets == ["geoverdict-inference-key"]
    env = {e["name"]: e.get("value") for e in consumer["containers"][0]["env"]}
    assert env["GEOVERDICT_TORCHSERVE_KEY_FILE"] == "/etc/geoverdict/inference-key/key_file.json"
    assert env["GEOVERDICT_TORCHSERVE_URL"] == "http://geoverdict-torchserve:8090"
    torchserve = find(docs, "Deployment", "torchserve")["spec"]["template"]["spec"]
    mounts = {c["name"]: {m["name"] for m in c["volumeMounts"]} for c in torchserve["containers"]}
    # TorchServe's key_file.json (all three keys) is in its own container only.
    assert "keys" in mounts["torchserve"] and "keys" not in mounts["gateway"]
    assert {"inference-key", "client-key"} <= mounts["gateway"]
    service = find(docs, "Service", "torchserve")["spec"]
    assert {p["port"] for p in service["ports"]} == {8090, 8082}  # never 8080 or 8081


def test_gateway_configuration_is_the_chart_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    config = find(rendered["default"], "ConfigMap", "gateway")["data"]
    for name in ("nginx.conf", "inference_key.js"):
        assert config[name] == (CHART / "files" / "gateway" / name).read_text()
    assert "listen 8090;" in config["nginx.conf"]


def test_alert_rules_and_dashboards_are_the_deploy_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    alerts = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
    dashboards = sorted((REPO_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    # One source: the chart's files are links to deploy/, not copies.
    assert (CHART / "files" / "alerts.yml").resolve() == alerts
    linked = sorted((CHART / "files" / "dashboards").iterdir())
    assert [p.resolve() for p in linked] == dashboards and all(p.is_symlink() for p in linked)
    docs = rendered["default"]
    rule = find(docs, "PrometheusRule", "alerts")
    assert rule["spec"] == yaml.safe_load(alerts.read_text())
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    ]
    # (a YAML block ends with a newline the JSON files lack)
    assert {name: text.rstrip("\n") for m in maps for name, text in m["data"].items()} == {
        p.name: p.read_text().rstrip("\n") for p in dashboards
    }
    assert all(json.loads(text) for m in maps for text in m["data"].values())


def test_scrape_jobs_keep_the_names_alerts_use(rendered: dict[str, list[dict[str, Any]]]) -> None:
    jobs = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc["spec"]["endpoints"][0][
            "relabelings"
        ][0]["replacement"]
        for doc in rendered["default"]
        if doc["kind"] == "ServiceMonitor"
    }
    assert jobs == {"consumer": "geoverdict-consumer", "torchserve": "torchserve", "redis": "redis"}
    triton = {  # its Redis is outside the release
        doc["metadata"]["labels"]["app.kubernetes.io/component"]
        for doc in rendered["triton"]
        if doc["kind"] == "ServiceMonitor"
    }
    assert triton == {"consumer", "triton"}


def test_every_service_setting_is_reachable(rendered: dict[str, list[dict[str, Any]]]) -> None:
    reached = {env["name"] for docs in rendered.values() for env in consumer_container(docs)["env"]}
    assert setting_names() - reached == UNREACHED


def test_chart_settings_are_the_services(rendered: dict[str, list[dict[str, Any]]]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    for section in SETTINGS:
        fields = chart_keys(section)
        for key, value in values[section].items():
            assert key in fields, f"config.{section}.{key} is no setting"
            default = fields[key].get_default(call_default_factory=True)
            if (section, key) not in CHART_OWN_DEFAULTS:
                assert value == (list(default) if isinstance(default, tuple) else default), key


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_service_accepts_the_rendered_settings(
    rendered: dict[str, list[dict[str, Any]]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer would start on what the chart renders (secrets stand in for Secrets)."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for env in consumer_container(rendered[name])["env"]:
        monkeypatch.setenv(env["name"], env.get("value", "from-a-secret"))
    settings = load_service_settings()
    assert settings.group_id == "geoverdict"
    # TorchServe through its pods' gateway, Triton directly.
    assert settings.server.url.endswith(":8000" if name == "triton" else ":8090")


def test_no_pod_gets_service_link_variables(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes adds GEOVERDICT_REDIS_PORT and the like for the release's own Services
    (named geoverdict-*), which the consumer refuses as unknown settings: seen on a real
    cluster (issue 27), where the consumer crashed at start. The chart turns them off."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("GEOVERDICT_REDIS_PORT", "tcp://10.96.0.12:6379")
    with pytest.raises(Exception, match="GEOVERDICT_REDIS_PORT"):
        load_service_settings()
    for docs in rendered.values():
        for workload in (d for d in docs if d["kind"] in {"Deployment", "Job"}):
            assert workload["spec"]["template"]["spec"]["enableServiceLinks"] is False


def secret_like_values(node: Any, path: str = "") -> list[str]:
    """Paths of values under secret-sounding keys, other than the names of Secrets."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}".lstrip(".")
            named = key in {"existingSecret", "existingSecretKey", "imagePullSecrets", "key"}
            if any(w in key.lower() for w in ("password", "token", "secret")) and not (
                named or isinstance(value, dict) or not value
            ):
                found.append(here)
            found += secret_like_values(value, here)
    return found


def test_values_hold_no_secret() -> None:
    for path in [CHART / "values.yaml", *CHART.glob("ci/*.yaml")]:
        assert secret_like_values(yaml.safe_load(path.read_text())) == [], path.name


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (("config.kafka.security_protocol=SASL_SSL",), "kafka.saslPassword.existingSecret"),
        (("config.consumer.redis_url=redis://x:6379/0",), "config.consumer.redis_url is set by"),
        (("torchserve.modelStore.source=volume",), "torchserve.modelStore.volume"),
        (("modelServer=onnx",), "modelServer: torchserve or triton"),
        (("modelServer=triton", "inferenceKey.mode=env"), "inferenceKey.mode: file with"),
        (("modelServer=triton", "config.triton.auth_header=x"), "config.triton.auth_header is set"),
        (("modelServer=triton", "triton.modelStore.source=volume"), "triton.modelStore.volume"),
        (
            ("consumer.autoscaling.keda.enabled=true", "config.kafka.security_protocol=SSL"),
            "authenticationRef",
        ),
        (("kafka.acls.enabled=true", "kafka.acls.adminProperties.existingSecret=a"), "principal"),
        (("kafka.acls.enabled=true", "kafka.acls.principal=geoverdict"), "existingSecret"),
    ],
    ids=[
        "sasl-without-password",
        "managed-setting",
        "volume-without-source",
        "unknown-server",
        "triton-token",
        "triton-header",
        "triton-volume-without-source",
        "keda-tls-no-auth",
        "acls-without-principal",
        "acls-without-admin",
    ],
)
def test_chart_refuses_incomplete_values_with_the_fix(sets: tuple[str, ...], says: str) -> None:
    result = helm(*template_args((), sets))
    assert result.returncode != 0 and says in result.stderr, result.stderr


def test_redis_in_cluster_only_without_an_url(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert find(rendered["default"], "Deployment", "redis")
    for name in ("gpu", "keda"):
        components = {
            d["metadata"]["labels"]["app.kubernetes.io/component"] for d in rendered[name]
        }
        assert "redis" not in components, name
    env = {e["name"]: e for e in consumer_container(rendered["gpu"])["env"]}
    assert env["GEOVERDICT_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "geoverdict-redis"


def test_values_files_are_in_the_chart() -> None:
    in_chart = (paths for name, paths in VARIANTS.items() if name != "cluster")
    assert all(Path(p).is_relative_to(CHART) for paths in in_chart for p in paths)


# -- Triton (modelServer: triton) ---------------------------------------------------------------
def test_one_model_server_is_deployed_and_the_consumers_get_its_settings_alone(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    servers = (("default", "torchserve", "triton"), ("triton", "triton", "torchserve"))
    for name, server, other in servers:
        docs = rendered[name]
        components = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs}
        assert server in components and other not in components, name
        assert ("gateway" in components) == (server == "torchserve")  # Triton checks the key
        env = {e["name"]: e.get("value") for e in consumer_container(docs)["env"]}
        assert env["GEOVERDICT_MODEL_SERVER"] == server
        assert not [k for k in env if k.startswith(f"GEOVERDICT_{other.upper()}_")], name
    env = {e["name"]: e.get("value") for e in consumer_container(rendered["triton"])["env"]}
    assert env["GEOVERDICT_TRITON_URL"] == "http://geoverdict-triton:8000"
    assert env["GEOVERDICT_TRITON_AUTH_HEADER"] == "authorization"
    assert (env["GEOVERDICT_TRITON_BATCH_SIZE"], env["GEOVERDICT_TRITON_CONCURRENCY"]) == (
        "16",
        "32",
    )


def _secret_mounts(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Path of each Secret item a container sees -> "secret/key"."""
    volumes = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
    found = {}
    for mount in container["volumeMounts"]:
        secret = volumes.get(mount["name"])
        if secret is None:
            continue
        assert mount.get("readOnly") is True, mount
        for item in secret["items"]:
            found[f"{mount['mountPath']}/{item['path']}"] = f"{secret['secretName']}/{item['key']}"
    return found


def test_triton_and_the_consumers_mount_the_same_inference_key_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["triton"]
    consumer_spec, triton_spec = pod(docs, "consumer"), pod(docs, "triton")
    consumer, triton = consumer_spec["containers"][0], triton_spec["containers"][0]
    env = {e["name"]: e.get("value") for e in consumer["env"]}
    consumer_key = _secret_mounts(consumer_spec, consumer)[env["GEOVERDICT_TRITON_KEY_FILE"]]
    args = triton["args"]
    triton_key = _secret_mounts(triton_spec, triton)[args[args.index("--inference-key") + 1]]
    assert consumer_key == triton_key == "geoverdict-inference-key/key_file.json"
    # No secret on the rendered command line: the entrypoint adds it from the file.
    assert not [a for a in args if "restricted" in a or "Bearer" in a]
    assert not [e for e in triton.get("env", []) if "valueFrom" in e]


def test_triton_runs_the_arguments_docker_compose_gives_it(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """One entrypoint contract: the chart and docker-compose.triton.yml pass the same arguments,
    but for where each mounts the secret."""
    chart = list(first_container(rendered["triton"], "triton")["args"])
    compose = list(yaml.safe_load(TRITON.read_text())["services"]["triton"]["command"])
    at = chart.index("--inference-key") + 1
    assert chart[:at] + chart[at + 1 :] == compose[:at] + compose[at + 1 :]


def test_triton_is_probed_without_the_secret_and_ready_with_the_consumers_model(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    triton = first_container(rendered["triton"], "triton")
    assert triton["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {
        "path": "/v2/models/geoverdict/ready",
        "port": "http",
    }
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {
        "http": 8000,
        "metrics": 8002,
    }
    service = find(rendered["triton"], "Service", "triton")["spec"]
    assert {p["port"] for p in service["ports"]} == {8000, 8002}
    assert find(rendered["triton"], "PodDisruptionBudget", "triton")["spec"]["maxUnavailable"] == 1


def test_only_the_consumers_reach_triton(rendered: dict[str, list[dict[str, Any]]]) -> None:
    policy = find(rendered["triton"], "NetworkPolicy", "triton")["spec"]
    consumers, scrapers = policy["ingress"]
    assert consumers["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "consumer"
    )
    assert consumers["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert "from" not in scrapers and scrapers["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_triton_on_gpu_nodes_serves_with_the_gpu_batching(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    spec = pod(rendered["triton"], "triton")
    triton = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in triton["env"]}
    assert env["SERVING"] == "gpu"  # deploy/triton/entrypoint.sh: --gpu
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    shm = {v["name"]: v for v in spec["volumes"]}["shm"]["emptyDir"]
    assert shm == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in triton["volumeMounts"]
    assert spec["initContainers"][0]["image"].endswith("models:geoverdict-3f0612745a")
    cpu = pod(render(sets=("modelServer=triton",)), "triton")
    cpu_env = {e["name"]: e.get("value") for e in cpu["containers"][0]["env"]}
    assert cpu_env["SERVING"] == "cpu" and "runtimeClassName" not in cpu
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_the_acl_job_grants_what_the_local_stack_enforces(guarantee: str) -> None:
    from geoverdict_stack import acls

    docs = render(VARIANTS["keda"], (f"config.consumer.processing_guarantee={guarantee}",))
    job = find(docs, "Job", "kafka-acls")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    assert container["image"] == compose["kafka-init"]["image"]  # Kafka's tools, pinned alike
    env = {e["name"]: e["value"] for e in container["env"]}
    granted = set()
    for line in container["args"][0].splitlines():
        if not line.strip().startswith("acl --operation"):
            continue
        resource = re.search(r"--(topic|group|transactional-id) \"\$(\w+)\"|--(cluster)", line)
        assert resource, line
        kind, name = (resource[1], env[resource[2]]) if resource[1] else ("cluster", acls.CLUSTER)
        prefixed = "--resource-pattern-type prefixed" in line
        for camel in re.findall(r"--operation (\w+)", line):
            operation = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", camel).upper()
            granted.add((env["PRINCIPAL"], operation, kind, name, prefixed))
    expected = {
        (g.principal, g.operation, g.resource, g.name, g.prefixed)
        for g in acls.grants(
            env["INPUT"],
            env["VERDICTS"],
            env["DEAD"],
            group=env["GROUP"],
            transactional_prefix=env["TXN_PREFIX"],
        )
        if g.principal == acls.CONSUMER_USER
        and (guarantee == "exactly_once" or g.resource not in {"transactional-id", "cluster"})
    }
    assert granted == expected
    # the names are the consumers' own settings
    consumer = {e["name"]: e.get("value") for e in container_env(docs)}
    assert env["GROUP"] == consumer["GEOVERDICT_GROUP_ID"]
    assert env["INPUT"] == consumer["GEOVERDICT_KAFKA_INPUT_TOPIC"]
    assert env["PRINCIPAL"] == consumer["GEOVERDICT_KAFKA_SASL_USERNAME"]
    if guarantee == "exactly_once":
        assert env["TXN_PREFIX"] == consumer["GEOVERDICT_TRANSACTIONAL_ID_PREFIX"]


def container_env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The consumer container's environment."""
    return list(first_container(docs, "consumer")["env"])
