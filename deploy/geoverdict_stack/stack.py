"""The local stack as one object: start Kafka, Redis and a model server (TorchServe, or
Triton) together, find them again
from another process through a state file, and stop every process it started."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from geoverdict_common.paths import model_store_dir, runs_dir
from geoverdict_stack import acls, ports, process
from geoverdict_stack.exceptions import NotRunningError, StackError
from geoverdict_stack.kafka import KafkaServer, create_topics
from geoverdict_stack.process import ProcessRecord
from geoverdict_stack.redis import RedisServer
from geoverdict_stack.server import Server
from geoverdict_stack.torchserve import TorchServeServer, read_keys
from geoverdict_stack.triton import TritonServer

log = logging.getLogger(__name__)

SERVICES = ("kafka", "redis", "torchserve", "triton")  # in start order
DEFAULT_SERVICES = ("kafka", "redis", "torchserve")
STATE_FILE = "stack.json"
DEFAULT_TOPICS = ("geoverdict.images", "geoverdict.verdicts", "geoverdict.dead-letters")


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and on which ports; defaults are the servers' standard ports."""

    run_dir: Path = field(default_factory=lambda: runs_dir() / "stack")
    services: tuple[str, ...] = DEFAULT_SERVICES
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_sasl_port: int = 9094  # SASL_PLAINTEXT with PLAIN: clients' security settings
    kafka_ssl_port: int = 9095  # SASL_SSL (PLAIN over TLS), with ACLs: the secure profile
    redis_port: int = 6379
    torchserve_inference_port: int = 8080
    torchserve_management_port: int = 8081
    torchserve_metrics_port: int = 8082
    triton_http_port: int = 8000
    triton_metrics_port: int = 8002
    model_store: Path = field(default_factory=model_store_dir)
    models: tuple[str, ...] = ()  # e.g. ("geoverdict=demo.mar",); empty: serve none
    enable_model_api: bool = False
    kafka_partitions: int = 4
    # Created at `up` (the broker does not create topics on first use): the service's defaults.
    kafka_topics: tuple[str, ...] = DEFAULT_TOPICS
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        unknown = set(self.services) - set(SERVICES)
        if unknown:
            raise StackError(f"unknown service(s) {sorted(unknown)}; choose from {SERVICES}")
        if self.start_timeout_s <= 0:
            raise StackError(f"start_timeout_s must be > 0, got {self.start_timeout_s}")

    @property
    def model_server(self) -> str | None:
        """The model server the stack's clients use: TorchServe when it runs (the default),
        else Triton when it runs."""
        for name in ("torchserve", "triton"):
            if name in self.services:
                return name
        return None

    @classmethod
    def with_free_ports(cls, **kwargs: Any) -> StackConfig:
        """Same, on ports that are free right now (tests, or a second stack beside the first)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name.endswith("_port")]
        chosen: dict[str, Any] = dict(zip(names, ports.free_ports(len(names)), strict=True))
        return cls(**chosen, **kwargs)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, for the state file."""
        data = dataclasses.asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["model_store"] = str(self.model_store)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackConfig:
        """Inverse of to_json."""
        data = dict(data)
        data["run_dir"] = Path(data["run_dir"])
        data["model_store"] = Path(data["model_store"])
        data["services"] = tuple(data["services"])
        data["models"] = tuple(data["models"])
        data["kafka_topics"] = tuple(data.get("kafka_topics", DEFAULT_TOPICS))
        return cls(**data)


def models_in_store(models: Sequence[str], store: Path | None) -> tuple[tuple[str, ...], Path]:
    """`NAME=ARCHIVE` entries as the model server loads them (file names of one model store),
    and that store. An archive given by a path is checked against the SHA256SUMS of the folder
    it is in: that folder becomes the store when none is given; an archive outside the given
    store (or archives in two folders) is refused with what to pass instead."""
    entries: list[str] = []
    folders: set[Path] = set()
    for entry in models:
        name, sep, archive = entry.partition("=")
        if not sep:
            name, archive = Path(entry).stem, entry
        path = Path(archive)
        if len(path.parts) > 1:  # a path, not a file name of the store
            folders.add(path.expanduser().resolve().parent)
        entries.append(f"{name}={path.name}")
    chosen = store.resolve() if store is not None else None
    if len(folders) > 1:
        raise StackError(
            f"--model: archives in {len(folders)} folders ({', '.join(sorted(map(str, folders)))});"
            " put them in one model store and pass --model-store DIR"
        )
    if folders:
        (folder,) = folders
        if chosen is None:
            chosen = folder
        elif folder != chosen:
            raise StackError(
                f"--model: {folder} is not the model store {chosen}; pass --model-store {folder} "
                "or name the archive by its file name in the store"
            )
    return tuple(entries), chosen if chosen is not None else model_store_dir()


@dataclass(frozen=True)
class ServiceStatus:
    """What `geoverdict stack status` shows for one server."""

    name: str
    healthy: bool
    pid: int | None
    endpoint: str
    startup_s: float | None
    log_file: str


class Stack:
    """Kafka, Redis and a model server for one run folder. Use as a context manager, or
    up()/down()."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.records: dict[str, ProcessRecord] = {}
        self.startup_s: dict[str, float] = {}
        c = self.config
        self.kafka = KafkaServer(
            c.run_dir,
            c.kafka_port,
            c.kafka_controller_port,
            start_timeout=c.start_timeout_s,
            default_partitions=c.kafka_partitions,
            sasl_port=c.kafka_sasl_port,
            ssl_port=c.kafka_ssl_port,
        )
        self.redis = RedisServer(c.run_dir, c.redis_port, start_timeout=c.start_timeout_s)
        self.torchserve = TorchServeServer(
            c.run_dir,
            c.torchserve_inference_port,
            c.torchserve_management_port,
            c.torchserve_metrics_port,
            c.model_store,
            c.models,
            enable_model_api=c.enable_model_api,
            start_timeout=c.start_timeout_s,
        )
        self.triton = TritonServer(
            c.run_dir,
            c.triton_http_port,
            c.triton_metrics_port,
            c.model_store,
            c.models,
            start_timeout=c.start_timeout_s,
        )

    # -- endpoints handed to clients ---------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        """Kafka bootstrap servers."""
        return self.kafka.bootstrap_servers

    @property
    def kafka_sasl_bootstrap(self) -> str:
        """Kafka's SASL/PLAIN listener; its user and password: kafka.sasl_credentials()."""
        return self.kafka.sasl_bootstrap_servers or ""

    @property
    def kafka_ssl_bootstrap(self) -> str:
        """Kafka's SASL_SSL listener (PLAIN over TLS, ACLs); trust kafka.ca_file, users in
        kafka.sasl_credentials(user)."""
        return self.kafka.ssl_bootstrap_servers or ""

    @property
    def redis_url(self) -> str:
        """Redis URL for a consumer: the `geoverdict` user and its password included."""
        return self.redis.url

    @property
    def torchserve_key_file(self) -> Path:
        """The key file a consumer gets: the inference key alone, in key_file.json's format."""
        return self.torchserve.inference_key_file

    def torchserve_keys(self) -> dict[str, str]:
        """The current TorchServe keys by role (inference, management, API)."""
        return read_keys(self.torchserve.key_file)

    def model_server_settings(self) -> dict[str, str]:
        """Where the stack's model server listens and its inference key file, as its settings
        group has them (url, key_file)."""
        if self.config.model_server == "triton":
            return {"url": self.triton.url(), "key_file": str(self.triton.inference_key_file)}
        return {"url": self.torchserve.url("inference"), "key_file": str(self.torchserve_key_file)}

    def client_environment(self) -> dict[str, str]:
        """The GEOVERDICT_* settings that point consume, publish and watch at this stack (the
        consumer's Redis user, and the model server's inference key alone)."""
        env = {}
        if "kafka" in self.config.services:
            env["GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_bootstrap
        if "redis" in self.config.services:
            env["GEOVERDICT_REDIS_URL"] = self.redis_url
        if self.config.model_server == "torchserve":
            env["GEOVERDICT_TORCHSERVE_URL"] = self.torchserve.url("inference")
            env["GEOVERDICT_TORCHSERVE_KEY_FILE"] = str(self.torchserve_key_file.resolve())
        elif self.config.model_server == "triton":
            env["GEOVERDICT_MODEL_SERVER"] = "triton"
            env["GEOVERDICT_TRITON_URL"] = self.triton.url("inference")
            env["GEOVERDICT_TRITON_KEY_FILE"] = str(self.triton.inference_key_file.resolve())
        return env

    def servers(self) -> list[Server]:
        """The configured servers in start order."""
        by_name: dict[str, Server] = {
            "kafka": self.kafka,
            "redis": self.redis,
            "torchserve": self.torchserve,
            "triton": self.triton,
        }
        return [by_name[name] for name in SERVICES if name in self.config.services]

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self) -> None:
        """Start every configured server; on any failure (or Ctrl-C) stop what was started."""
        state = self.config.run_dir / STATE_FILE
        if state.exists() and any(r.is_alive() for r in _load_records(state).values()):
            raise StackError(
                f"a stack is already running from {self.config.run_dir}; "
                "`geoverdict stack down` first, or use another run folder"
            )
        for server in self.servers():
            for role, port in server.ports().items():
                ports.require_free(port, role)
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        for server in self.servers():
            # Each `up` starts clean: the local stack is for development and tests, not storage.
            shutil.rmtree(server.home, ignore_errors=True)
        try:
            for server in self.servers():
                record, elapsed = server.start()
                self.records[server.name] = record
                self.startup_s[server.name] = round(elapsed, 2)
                self._save()
                if server is self.kafka and self.config.kafka_topics:
                    topics = dict.fromkeys(self.config.kafka_topics, self.config.kafka_partitions)
                    create_topics(self.kafka_bootstrap, topics)
                    if len(self.config.kafka_topics) == 3:  # input, verdicts, dead letters
                        acls.apply(
                            self.kafka_bootstrap,
                            acls.grants(*self.config.kafka_topics, group="geoverdict"),
                        )
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop every process this stack started, newest first, and forget them."""
        for name in reversed(list(self.records)):
            process.stop(self.records[name])
            log.info("stopped %s (pid %d)", name, self.records[name].pid)
        self.records.clear()
        (self.config.run_dir / STATE_FILE).unlink(missing_ok=True)

    def status(self) -> list[ServiceStatus]:
        """Health of each configured server: its process is alive and it answers."""
        endpoints = {
            "kafka": self.kafka_bootstrap,
            "redis": self.redis.address,
            "torchserve": self.torchserve.url("inference"),
            "triton": self.triton.url("inference"),
        }
        rows = []
        for server in self.servers():
            record = self.records.get(server.name)
            alive = record is not None and record.is_alive()
            rows.append(
                ServiceStatus(
                    name=server.name,
                    healthy=alive and server.ready(),
                    pid=record.pid if record else None,
                    endpoint=endpoints[server.name],
                    startup_s=self.startup_s.get(server.name),
                    log_file=str(server.log_file),
                )
            )
        return rows

    def pids(self, name: str | None = None) -> list[int]:
        """PIDs of the started servers (or of server `name`) and all their children (workers,
        JVMs, Triton's stubs)."""
        found = []
        for server, record in self.records.items():
            proc = record.process() if name in (None, server) else None
            if proc is None:
                continue
            found.append(proc.pid)
            with contextlib.suppress(Exception):
                found.extend(child.pid for child in proc.children(recursive=True))
        return found

    def _save(self) -> None:
        state = {
            "config": self.config.to_json(),
            "records": {n: dataclasses.asdict(r) for n, r in self.records.items()},
            "startup_s": self.startup_s,
        }
        path = self.config.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    @classmethod
    def attach(cls, run_dir: Path | None = None) -> Stack:
        """The stack started earlier (by this or another process) from `run_dir`."""
        path = (run_dir or StackConfig().run_dir) / STATE_FILE
        if not path.exists():
            raise NotRunningError(f"no stack is running from {path.parent} (no {STATE_FILE})")
        state = json.loads(path.read_text())
        stack = cls(StackConfig.from_json(state["config"]))
        stack.records = _load_records(path)
        stack.startup_s = state.get("startup_s", {})
        return stack

    def __enter__(self) -> Stack:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def _load_records(state_file: Path) -> dict[str, ProcessRecord]:
    data = json.loads(state_file.read_text())
    return {name: ProcessRecord(**rec) for name, rec in data.get("records", {}).items()}


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while inside, so `finally` blocks stop the stack."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def format_status(rows: Sequence[ServiceStatus]) -> str:
    """A small aligned table of the servers' health."""
    lines = [f"{'service':<11} {'state':<9} {'pid':>7}  {'startup':>7}  endpoint"]
    for r in rows:
        state = "healthy" if r.healthy else ("down" if r.pid is None else "unhealthy")
        startup = f"{r.startup_s:.1f}s" if r.startup_s is not None else "-"
        lines.append(f"{r.name:<11} {state:<9} {r.pid or '-':>7}  {startup:>7}  {r.endpoint}")
    return "\n".join(lines)
