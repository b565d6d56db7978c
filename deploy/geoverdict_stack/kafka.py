"""Apache Kafka 4 in KRaft mode (one node, broker and controller) from the Maven Central jars."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from geoverdict_stack import acls, prerequisites
from geoverdict_stack.exceptions import StartError
from geoverdict_stack.ports import HOST, is_listening
from geoverdict_stack.server import Server
from geoverdict_stack.tls import make_certificates

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

log = logging.getLogger(__name__)

# Quiet broker log: warnings and the start/stop lines only.
LOG4J2_YAML = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""


def new_cluster_id() -> str:
    """A random KRaft cluster id, as Kafka's own Uuid.randomUuid() makes them: 22 URL-safe
    base64 characters, never starting with '-' (a command line would read it as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


TRANSACTION_MAX_TIMEOUT_MS = 900_000  # Kafka's default, 15 minutes


class KafkaServer(Server):
    """A single-node KRaft cluster; ready when a metadata request answers."""

    name = "kafka"

    def __init__(
        self,
        run_dir: Path,
        port: int,
        controller_port: int,
        start_timeout: float = 60.0,
        heap_mb: int = 512,
        default_partitions: int = 4,
        sasl_port: int | None = None,
        ssl_port: int | None = None,
    ) -> None:
        super().__init__(run_dir, start_timeout)
        self.port = port
        self.controller_port = controller_port
        self.sasl_port = sasl_port
        self.ssl_port = ssl_port
        self.heap_mb = heap_mb
        self.default_partitions = default_partitions
        self.data_dir = self.home / "data"
        self.properties_file = self.home / "server.properties"

    @property
    def bootstrap_servers(self) -> str:
        """host:port for clients."""
        return f"{HOST}:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str | None:
        """host:port of the SASL/PLAIN listener, when there is one."""
        return f"{HOST}:{self.sasl_port}" if self.sasl_port else None

    @property
    def ssl_bootstrap_servers(self) -> str | None:
        """host:port of the SASL_SSL listener (PLAIN over TLS), when there is one."""
        return f"{HOST}:{self.ssl_port}" if self.ssl_port else None

    @property
    def sasl_file(self) -> Path:
        """The SASL/PLAIN users and passwords of this run ({user: password})."""
        return self.home / "sasl-plain.json"

    @property
    def tls_folder(self) -> Path:
        """This run's CA (ca.pem, what clients trust) and server certificate."""
        return self.home / "tls"

    @property
    def ca_file(self) -> Path:
        """The CA certificate a client of the SASL_SSL listener trusts."""
        return self.tls_folder / "ca.pem"

    def sasl_credentials(self, user: str = acls.CLIENT_USER) -> tuple[str, str]:
        """(username, password) of `user` (admin, geoverdict or client) on the SASL listeners."""
        return user, str(json.loads(self.sasl_file.read_text())[user])

    def ports(self) -> dict[str, int]:
        found = {"kafka": self.port, "kafka controller": self.controller_port}
        if self.sasl_port:
            found["kafka sasl"] = self.sasl_port
        if self.ssl_port:
            found["kafka sasl_ssl"] = self.ssl_port
        return found

    def _listeners(self) -> dict[str, str]:
        listeners = {"PLAINTEXT": f"{HOST}:{self.port}"}
        if self.sasl_port:
            listeners["SASL_PLAINTEXT"] = f"{HOST}:{self.sasl_port}"
        if self.ssl_port:
            listeners["SASL_SSL"] = f"{HOST}:{self.ssl_port}"
        return listeners

    def _sasl_properties(self) -> dict[str, str]:
        """SASL/PLAIN listeners (plain, and over TLS) for the admin, the consumer and a client,
        with ACLs (acls.py) as the secure profile of docker-compose has them. The plaintext
        listener's ANONYMOUS principal is a super user: this stack is for development."""
        if not (self.sasl_port or self.ssl_port):
            return {}
        module = "org.apache.kafka.common.security.plain.PlainLoginModule"
        users = json.loads(self.sasl_file.read_text())
        jaas = (
            f"{module} required "
            + " ".join(f'user_{user}="{password}"' for user, password in sorted(users.items()))
            + ";"
        )
        props = {
            "sasl.enabled.mechanisms": "PLAIN",
            "authorizer.class.name": AUTHORIZER,
            "super.users": f"User:ANONYMOUS;User:{acls.ADMIN_USER}",
        }
        for listener in ("sasl_plaintext", "sasl_ssl"):
            props[f"listener.name.{listener}.plain.sasl.jaas.config"] = jaas
        if self.ssl_port:
            props |= {
                "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
                "listener.name.sasl_ssl.ssl.keystore.location": str(
                    self.tls_folder / "server-keystore.pem"
                ),
            }
        return props

    def properties(self) -> dict[str, str]:
        """The generated server.properties."""
        listeners = self._listeners()
        advertised = ",".join(f"{name}://{address}" for name, address in listeners.items())
        protocols = ",".join(f"{name}:{name}" for name in listeners)
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": f"{advertised},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": f"{protocols},CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.default_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # The longest transaction a producer may ask for (the consumer asks 120 s), stated.
            "transaction.max.timeout.ms": str(TRANSACTION_MAX_TIMEOUT_MS),
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # One node, short-lived: rebalance at once, keep little on disk.
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
            # Topics are created on purpose, as in docker-compose and on real clusters.
            "auto.create.topics.enable": "false",
            # The broker's default, stated: KafkaSettings.max_message_bytes must agree with it.
            "message.max.bytes": "1048588",
            **self._sasl_properties(),
        }

    def prepare(self) -> None:
        libs = prerequisites.kafka_jars(fetch=True)
        prerequisites.java()
        if (self.sasl_port or self.ssl_port) and not self.sasl_file.exists():
            users = (acls.ADMIN_USER, acls.CONSUMER_USER, acls.CLIENT_USER)
            self.sasl_file.write_text(json.dumps({u: secrets.token_hex(16) for u in users}))
            self.sasl_file.chmod(0o600)
        if self.ssl_port and not self.ca_file.exists():
            make_certificates(self.tls_folder, (HOST, "localhost"))
        self.properties_file.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        (self.home / "log4j2.yaml").write_text(LOG4J2_YAML)
        if (self.data_dir / "meta.properties").exists():
            return  # formatted by an earlier run of the same folder
        result = subprocess.run(
            [
                *self._java(libs),
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={new_cluster_id()}",
                "-c",
                str(self.properties_file),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            self.log_file.write_text(result.stdout + result.stderr)
            raise StartError(self.name, "formatting the KRaft storage failed", self.log_file)

    def _java(self, libs: Path) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else "java"
        return [java, "-cp", str(libs / "*")]

    def command(self) -> Sequence[str]:
        libs = prerequisites.kafka_libs_dir()
        java, *classpath = self._java(libs)
        return [
            java,
            f"-Xms{min(256, self.heap_mb)}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.home}",
            *classpath,
            "kafka.Kafka",
            str(self.properties_file),
        ]

    def ready(self) -> bool:
        # An open port first: kafka-python backs off for seconds after a refused bootstrap.
        if not is_listening(self.port):
            return False
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                request_timeout_ms=3000,
                client_id="geoverdict-stack",
            )
        except (KafkaError, OSError, ValueError) as exc:
            log.debug("kafka not ready: %s", exc)
            return False
        try:
            admin.describe_cluster()
            return True
        except (KafkaError, OSError) as exc:
            log.debug("kafka not ready: %s", exc)
            return False
        finally:
            admin.close()


def create_topics(
    bootstrap_servers: str, topics: Mapping[str, int], timeout_s: float = 30.0
) -> None:
    """Create topics (name → partitions) that do not exist yet; existing ones are left alone."""
    from kafka.admin import NewTopic  # noqa: PLC0415
    from kafka.errors import TopicAlreadyExistsError  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="geoverdict-stack")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name, partitions in topics.items()
            if name not in existing
        ]
        if new:
            # Another client may create the same topic at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
            log.info("created topics %s", ", ".join(t.name for t in new))
        _wait_for_leaders(admin, bootstrap_servers, list(topics), deadline)
    finally:
        admin.close()


def _wait_for_leaders(
    admin: KafkaAdminClient, bootstrap_servers: str, names: list[str], deadline: float
) -> None:
    """Return once every partition of `names` has a leader that answers: a producer writing to
    a topic created a moment ago otherwise gets NOT_LEADER errors and retries (a warning each).
    The metadata names a leader before that broker serves the partition, so the last step asks
    each leader for its end offset (the broker's own readiness check)."""
    if not names:
        return
    while True:
        waiting: dict[str, str] = {}  # topic -> why it is not ready yet
        partitions: list[TopicPartition] = []
        for t in admin.describe_topics(names):
            led = [
                p["partition"] for p in t["partitions"] if p["error_code"] == 0 and p["leader"] >= 0
            ]
            if t["error_code"] != 0 or not t["partitions"] or len(led) < len(t["partitions"]):
                waiting[t["topic"]] = (
                    f"error code {t['error_code']}"
                    if t["error_code"] != 0
                    else f"{len(led)} of {len(t['partitions'])} partitions have a leader"
                )
            partitions += [TopicPartition(t["topic"], p) for p in led]
        if not waiting:
            break
        if time.monotonic() > deadline:
            why = "; ".join(f"{topic}: {reason}" for topic, reason in sorted(waiting.items()))
            raise KafkaError(f"topics not ready after creation: {why}")
        time.sleep(0.05)
    # kafka-python wants fetch_max_wait_ms (500) < request_timeout_ms < connections_max_idle_ms.
    timeout_ms = min(300_000, max(1000, int((deadline - time.monotonic()) * 1000)))
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id="geoverdict-stack",
        request_timeout_ms=timeout_ms,
        enable_auto_commit=False,
    )
    try:
        consumer.end_offsets(partitions)
    finally:
        consumer.close()
