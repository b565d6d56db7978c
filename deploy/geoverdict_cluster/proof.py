"""The proof that the chart scales on real lag: on the one-node cluster (deploy/cluster/up.sh),
a fresh Kafka beside it, the chart installed with deploy/cluster/values.yaml, photos published
faster than one consumer answers; KEDA's replicas sampled while the group's lag grows and
drains, and every event's answer counted by kcat reading read_committed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geoverdict_cluster.exceptions import ClusterError
from geoverdict_common.paths import cache_dir, project_dir

log = logging.getLogger(__name__)

NAMESPACE = "geoverdict"
RELEASE = "geoverdict"
CONSUMER = f"{RELEASE}-consumer"
KAFKA_CONTAINER = "geoverdict-cluster-kafka"
KAFKA_PORT = 19092
TOPICS = ("geoverdict.images", "geoverdict.verdicts", "geoverdict.dead-letters")
GROUP = "geoverdict"  # the chart's config.consumer.group_id
PARTITIONS = 6  # the chart's consumer.autoscaling.keda.maxReplicas in deploy/cluster/values.yaml
IMAGES = (
    "localhost/geoverdict/consumer:dev",
    "localhost/geoverdict/torchserve:dev",
    "localhost/geoverdict-stand-in/nginx:compose",
    "localhost/geoverdict-stand-in/redis:compose",
    "localhost/geoverdict-stand-in/redis-exporter:compose",
    "localhost/geoverdict-stand-in/pause:compose",
)


def run_dir() -> Path:
    return cache_dir() / "cluster" / "run"


@dataclass
class Tools:
    """kubectl, helm and kcat, against the cluster up.sh made."""

    kubectl: str = ""
    helm: str = ""
    kcat: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(cls) -> Tools:
        kubeconfig = run_dir() / "admin.kubeconfig"
        if not kubeconfig.is_file():
            raise ClusterError("no cluster: `geoverdict cluster up` first")
        kubectl = cache_dir() / "cluster" / "bin" / "kubectl"
        helm = subprocess.run(
            [str(project_dir() / "deploy" / "helm" / "install-helm.sh")],
            capture_output=True,
            text=True,
            check=False,
        )
        if helm.returncode != 0:
            raise ClusterError(f"Helm could not be built: {helm.stderr.strip()}")
        kcat = shutil.which("kcat")
        if kcat is None:
            raise ClusterError("kcat is not installed (apt-get install -y kcat)")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        return cls(str(kubectl), helm.stdout.strip(), kcat, env)

    def run(self, *argv: str, timeout: float = 600, stdin: str | None = None) -> str:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
            raise ClusterError(f"{Path(argv[0]).name} {argv[1]} failed: {tail}")
        return done.stdout

    def kube(self, *args: str, timeout: float = 120, stdin: str | None = None) -> str:
        return self.run(self.kubectl, *args, timeout=timeout, stdin=stdin)


@dataclass(frozen=True)
class ClusterProof:
    """What bench/cluster.json holds."""

    kubernetes: str
    keda: str
    images: list[dict[str, Any]]  # loaded from podman: name, size_mb
    install_s: float  # helm install until the pods were ready
    accepted: list[str]  # kind/name the API server accepted (PDBs, NetworkPolicies, ...)
    probes: dict[str, list[str]]  # container -> the probes the kubelet runs
    events: int
    publish_s: float
    answered_s: float  # from the first event published to the last answer read
    replicas: list[list[float]]  # [seconds since publishing began, desired replicas]
    ready_replicas: list[list[float]]  # [seconds, ready consumer pods]
    lag: list[list[float]]  # [seconds, the group's lag as KEDA's metrics API serves it]
    # [seconds, the group's lag read from Kafka: end offsets - committed]; KEDA's is capped at
    # lagThreshold x partitions (allowIdleConsumers false), this one is not
    group_lag: list[list[float]]
    max_replicas: int
    scaled_up_after_s: float | None  # first sample above the minimum
    back_to_min_after_s: float | None  # first sample at the minimum after the maximum
    verdicts: int
    dead_letters: int
    missing: int
    duplicated: int
    not_enforced: list[str]  # accepted by the API server but without effect on this node
    # A consumer's process killed (SIGKILL, through containerd) while the group drained the
    # lag: the pod, when, and how often Kubernetes restarted its container.
    crashed: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def start_kafka(host_ip: str) -> str:
    """A fresh single-node Kafka (the compose stand-in image, host networking) advertised on
    this machine's address, with the three topics; its bootstrap address."""
    from geoverdict_images.images import STAND_INS  # noqa: PLC0415
    from geoverdict_images.podman import Podman  # noqa: PLC0415

    image = str(STAND_INS["kafka"].alias)
    podman = Podman()
    if not podman.exists(image):
        raise ClusterError(f"no {image}: `geoverdict images stand-ins kafka` first")
    podman.succeeds("rm", "-f", KAFKA_CONTAINER)
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://{host_ip}:{KAFKA_PORT},CONTROLLER://127.0.0.1:19093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host_ip}:{KAFKA_PORT}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@127.0.0.1:19093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_TRANSACTION_MAX_TIMEOUT_MS": "900000",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
        "KAFKA_HEAP_OPTS": "-Xmx768m -Xms768m",
    }
    args = ["run", "-d", "--name", KAFKA_CONTAINER, "--network", "host"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    podman.run(*args, image)
    bootstrap = f"{host_ip}:{KAFKA_PORT}"
    check = ["exec", KAFKA_CONTAINER, "/opt/kafka/bin/kafka-broker-api-versions.sh"]
    deadline = time.monotonic() + 120
    while not podman.succeeds(*check, "--bootstrap-server", bootstrap):
        if time.monotonic() > deadline:
            raise ClusterError(f"Kafka at {bootstrap} did not answer in 120 s")
        time.sleep(2)
    for topic in TOPICS:
        podman.run(
            "exec", KAFKA_CONTAINER, "/opt/kafka/bin/kafka-topics.sh",
            "--bootstrap-server", bootstrap, "--create", "--if-not-exists", "--topic", topic,
            "--partitions", str(PARTITIONS), "--replication-factor", "1",
        )  # fmt: skip
    log.info("Kafka at %s with %s", bootstrap, ", ".join(TOPICS))
    return bootstrap


def install(tools: Tools, bootstrap: str) -> float:
    """The namespace, the inference key's Secret and the chart; seconds until pods are ready."""
    import secrets  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from geoverdict_common.inference_key import write_inference_key  # noqa: PLC0415

    started = time.monotonic()
    manifest = tools.kube("create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml")
    tools.kube("apply", "-f", "-", stdin=manifest)
    with tempfile.TemporaryDirectory(prefix="geoverdict-key-") as folder:
        key_file = Path(folder) / "key_file.json"
        write_inference_key(key_file, secrets.token_hex(32))
        secret = tools.kube(
            "-n", NAMESPACE, "create", "secret", "generic", "geoverdict-inference-key",
            f"--from-file=key_file.json={key_file}", "--dry-run=client", "-o", "yaml",
        )  # fmt: skip
    tools.kube("apply", "-f", "-", stdin=secret)
    chart = project_dir() / "deploy" / "helm" / "geoverdict"
    values = project_dir() / "deploy" / "cluster" / "values.yaml"
    # A fresh release for the fresh Kafka (an earlier one, finished or interrupted, goes).
    releases = tools.run(tools.helm, "list", "-n", NAMESPACE, "-a", "-q").split()
    if RELEASE in releases:
        log.info("uninstalling the earlier release")
        tools.run(tools.helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", timeout=300)
    tools.run(
        tools.helm, "install", RELEASE, str(chart), "-n", NAMESPACE,
        "-f", str(values), "--set", f"config.kafka.bootstrap_servers={bootstrap}",
        "--wait", "--timeout", "15m",
        timeout=1000,
    )  # fmt: skip
    return round(time.monotonic() - started, 1)


def accepted(tools: Tools) -> tuple[list[str], dict[str, list[str]]]:
    """What the API server holds of the release; the probes of each container."""
    kinds = "deployment,service,poddisruptionbudget,networkpolicy,scaledobject,configmap,hpa"
    names = tools.kube("-n", NAMESPACE, "get", kinds, "-o", "name").split()
    pods = json.loads(tools.kube("-n", NAMESPACE, "get", "deployments", "-o", "json"))
    probes: dict[str, list[str]] = {}
    for deployment in pods["items"]:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            kinds_of = [
                p for p in ("startupProbe", "livenessProbe", "readinessProbe") if p in container
            ]
            probes[f"{deployment['metadata']['name']}/{container['name']}"] = kinds_of
    return sorted(names), probes


# The lag KEDA computes for the ScaledObject's Kafka trigger, through the API server (the
# aggregated external metrics API the HPA reads).
LAG_METRIC = (
    f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/s0-kafka-geoverdict-images"
    f"?labelSelector=scaledobject.keda.sh%2Fname%3D{CONSUMER}"
)


def _quantity(value: str) -> float:
    """A Kubernetes quantity as the metrics API writes lag ("2513", "12500m", "3k")."""
    factors = {"m": 0.001, "k": 1e3, "M": 1e6}
    if value and value[-1] in factors:
        return float(value[:-1]) * factors[value[-1]]
    return float(value)


class Sampler(threading.Thread):
    """The consumer Deployment's desired and ready replicas every `period_s`."""

    def __init__(self, tools: Tools, bootstrap: str, period_s: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.tools = tools
        self.bootstrap = bootstrap
        self.group_lag: list[list[float]] = []
        self.period_s = period_s
        self.started = time.monotonic()
        self.desired: list[list[float]] = []
        self.ready: list[list[float]] = []
        self.lag: list[list[float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition  # noqa: PLC0415
        from kafka.errors import KafkaError  # noqa: PLC0415

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        reader = KafkaConsumer(bootstrap_servers=self.bootstrap)
        partitions = [TopicPartition(TOPICS[0], p) for p in range(PARTITIONS)]
        while not self.done.is_set():
            try:
                ends = reader.end_offsets(partitions)
                committed = admin.list_consumer_group_offsets(GROUP)
                behind = sum(
                    ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions
                )
                self.group_lag.append([round(time.monotonic() - self.started, 1), behind])
            except (KafkaError, OSError) as exc:  # a sample lost, not the proof
                log.warning("lag sample failed: %s", exc)
            try:
                out = self.tools.kube(
                    "-n", NAMESPACE, "get", "deployment", CONSUMER, "-o",
                    "jsonpath={.spec.replicas} {.status.readyReplicas}",
                    timeout=20,
                )  # fmt: skip
                desired, _, ready = out.partition(" ")
                now = round(time.monotonic() - self.started, 1)
                self.desired.append([now, int(desired or 0)])
                self.ready.append([now, int(ready or 0)])
                metric = json.loads(self.tools.kube("get", "--raw", LAG_METRIC, timeout=20))
                self.lag.append([now, _quantity(metric["items"][0]["value"])])
            except (ClusterError, subprocess.TimeoutExpired, KeyError, IndexError) as exc:
                log.warning("replica sample failed: %s", exc)
            self.done.wait(self.period_s)
        reader.close()
        admin.close()

    def latest(self) -> int:
        return int(self.desired[-1][1]) if self.desired else 0


def crash_one(tools: Tools) -> dict[str, Any]:
    """SIGKILL one consumer's process through containerd, as a crash would end it."""
    pods = json.loads(
        tools.kube("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=consumer",
                   "-o", "json")
    )["items"]  # fmt: skip
    running = [p for p in pods if p["status"].get("containerStatuses", [{}])[0].get("ready")]
    if not running:
        raise ClusterError("no ready consumer to crash")
    pod = running[-1]
    container = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    tools.run(
        "ctr", "--address", "/run/geoverdict-containerd/containerd.sock", "-n", "k8s.io",
        "tasks", "kill", "-s", "SIGKILL", container,
    )  # fmt: skip
    return {"pod": pod["metadata"]["name"], "container": container[:12]}


def restarts(tools: Tools, pod: str) -> int:
    out = tools.kube(
        "-n", NAMESPACE, "get", "pod", pod, "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    )  # fmt: skip
    return int(out or 0)


def prove(events: int, crash: bool = True, timeout_s: float = 1800.0) -> ClusterProof:
    """Run the proof end to end (the cluster must be up)."""
    from geoverdict_images.checks import answer_keys, photos, publish, tally  # noqa: PLC0415
    from geoverdict_images.podman import Podman  # noqa: PLC0415

    tools = Tools.find()
    host_ip = (run_dir() / "host-ip").read_text().strip()
    version = json.loads(tools.kube("version", "-o", "json"))["serverVersion"]["gitVersion"]
    podman = Podman()
    images = [{"image": i, "size_mb": podman.size_mb(i)} for i in IMAGES]
    bootstrap = start_kafka(host_ip)
    log.info("installing the chart (until its pods are ready)")
    install_s = install(tools, bootstrap)
    objects, probes = accepted(tools)
    log.info("making %d photos", events)
    payloads = photos(events)
    sampler = Sampler(tools, bootstrap)
    sampler.start()
    ids = set(publish(bootstrap, TOPICS[0], payloads, "cluster-proof"))
    publish_s = round(time.monotonic() - sampler.started, 1)
    log.info("published %d events in %.0f s; waiting for every answer", events, publish_s)
    deadline = time.monotonic() + timeout_s
    crashed: dict[str, Any] | None = None
    while True:
        verdicts, dead = answer_keys(tools.kcat, bootstrap, TOPICS[1:])
        done = len(ids & {*verdicts, *dead})
        if done == len(ids) or time.monotonic() > deadline:
            break
        if crashed is not None and not crashed.get("restarts"):
            with contextlib.suppress(ClusterError):  # gone: scaled away
                crashed["restarts"] = restarts(tools, crashed["pod"])
        if crash and crashed is None and done > events // 3:
            crashed = crash_one(tools)
            crashed["at_s"] = round(time.monotonic() - sampler.started, 1)
            crashed["answered_before"] = done
            log.info(
                "killed consumer %s (SIGKILL) with %d of %d answered", crashed["pod"], done, events
            )
        log.info("%d of %d answered; %d consumers", done, events, sampler.latest())
        time.sleep(10)
    answered_s = round(time.monotonic() - sampler.started, 1)
    log.info("answered after %.0f s; waiting for the consumers to scale back down", answered_s)
    minimum = 1
    while sampler.latest() > minimum and time.monotonic() < deadline + 600:
        time.sleep(5)
    time.sleep(10)
    sampler.done.set()
    sampler.join()
    counted = tally(ids, *answer_keys(tools.kcat, bootstrap, TOPICS[1:]))
    peak = max((int(c) for _, c in sampler.desired), default=0)
    up_at = next((t for t, c in sampler.desired if c > minimum), None)
    peak_at = next((t for t, c in sampler.desired if c == peak), 0.0)
    down_at = next((t for t, c in sampler.desired if t > peak_at and c == minimum), None)
    return ClusterProof(
        kubernetes=version,
        keda="v2.21.1",
        images=images,
        install_s=install_s,
        accepted=objects,
        probes=probes,
        events=events,
        publish_s=publish_s,
        answered_s=answered_s,
        replicas=sampler.desired,
        ready_replicas=sampler.ready,
        lag=sampler.lag,
        group_lag=sampler.group_lag,
        max_replicas=peak,
        scaled_up_after_s=up_at,
        back_to_min_after_s=down_at,
        verdicts=counted.verdicts,
        dead_letters=counted.dead_letters,
        missing=counted.missing,
        duplicated=counted.duplicated,
        crashed=crashed,
        not_enforced=[
            "NetworkPolicy: the CNI bridge plugin does not enforce policies (accepted only)"
        ],
    )
