"""docker-compose.yml brought up under podman, with docker-compose.stand-ins.yml in place of the
third-party images this machine cannot pull, then made to answer events end to end.

Debian's podman-compose (1.0.3) turns the files into containers (`up --no-start`) but neither
waits on `depends_on` conditions nor knows profiles, and podman runs health checks from systemd
timers, which a machine without systemd lacks. This module starts the containers in the files'
dependency order and holds each until its dependencies meet their conditions, running the
health checks itself (`podman healthcheck run`): what docker compose does. A service in a
profile is not started (the override puts Grafana, which has no stand-in, in one)."""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geoverdict_common.paths import project_dir
from geoverdict_images.exceptions import ImagesError
from geoverdict_images.podman import Podman

log = logging.getLogger(__name__)

FILES = ("docker-compose.yml", "docker-compose.stand-ins.yml")
PROJECT = "geoverdict"
EXTERNAL_KAFKA = "127.0.0.1:29092"  # the file's EXTERNAL listener, published on this host
PROMETHEUS = "http://127.0.0.1:9090"
# .env's secrets, made here (never written) unless the caller's environment has them.
SECRETS = ("REDIS_PASSWORD", "REDIS_EXPORTER_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


@dataclass(frozen=True)
class Service:
    name: str
    depends_on: Mapping[str, str]  # dependency -> condition
    healthcheck: Mapping[str, Any]
    profiles: tuple[str, ...]

    @property
    def container(self) -> str:
        return f"{PROJECT}_{self.name}_1"  # podman-compose's name for the first replica

    def health_deadline_s(self) -> float:
        """How long compose waits for it to be healthy: start period + interval x retries."""
        check = self.healthcheck
        start = _seconds(check.get("start_period", "0s"))
        return start + _seconds(check.get("interval", "30s")) * int(check.get("retries", 3)) + 30


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit) and duration[: -len(unit)].replace(".", "").isdigit():
            return float(duration[: -len(unit)]) * units[unit]
    raise ImagesError(f"cannot read the duration {duration!r} in the compose file")


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Compose's merge for what the override holds (mappings merged, the rest replaced)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def services(files: Iterable[Path]) -> dict[str, Service]:
    """The merged files' services."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = _merge(merged, yaml.safe_load(path.read_text()) or {})
    found = {}
    for name, spec in merged.get("services", {}).items():
        depends = spec.get("depends_on", {})
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        found[name] = Service(
            name,
            {d: c.get("condition", "service_started") for d, c in depends.items()},
            spec.get("healthcheck", {}),
            tuple(spec.get("profiles", ())),
        )
    return found


def start_order(found: Mapping[str, Service]) -> list[Service]:
    """The services without a profile, each after what it depends on."""
    order: list[Service] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ImagesError(f"the compose file's depends_on has a cycle: {' -> '.join(path)}")
        if name in seen:
            return
        for dependency in found[name].depends_on:
            visit(dependency, (*path, name))
        seen.add(name)
        order.append(found[name])

    for name, service in found.items():
        if not service.profiles:
            visit(name, ())
    return order


@dataclass
class Compose:
    """The project's compose files under podman-compose, with this module's start sequencing."""

    podman: Podman
    folder: Path = field(default_factory=project_dir)
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        path = shutil.which("podman-compose")
        if path is None:
            raise ImagesError("podman-compose is not installed (apt-get install -y podman-compose)")
        self.command = [path, "-p", PROJECT, *(a for f in FILES for a in ("-f", f))]
        self.env = {**self.podman.env, "GEOVERDICT_VERSION": "dev"}
        for name in SECRETS:
            self.env.setdefault(name, secrets.token_hex(24))
        self.env.update(self.environment)
        self.services = services(self.folder / f for f in FILES)

    def _compose(self, *args: str) -> None:
        done = subprocess.run(
            [*self.command, *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            check=False,
        )
        out = (done.stdout + done.stderr).decode(errors="replace")
        log.debug("podman-compose %s:\n%s", " ".join(args), out[-4000:])
        if done.returncode != 0:
            tail = " | ".join(out.strip().splitlines()[-6:])
            raise ImagesError(f"podman-compose {args[0]} failed ({done.returncode}): {tail}")

    def up(self) -> list[str]:
        """Create every container without a profile, then start them in order, each once its
        dependencies meet their conditions; the services started."""
        order = start_order(self.services)
        names = [s.name for s in order]
        log.info("creating %s", ", ".join(names))
        # --no-build: the images are built by `geoverdict images build --stand-ins`.
        self._compose("up", "--no-start", "--no-build", *names)
        for service in order:
            for dependency, condition in service.depends_on.items():
                self._wait_for(self.services[dependency], condition)
            log.info("starting %s", service.name)
            self.podman.run("start", service.container)
        return names

    def _wait_for(self, service: Service, condition: str) -> None:
        if condition == "service_healthy":
            deadline = time.monotonic() + service.health_deadline_s()
            while not self.podman.succeeds("healthcheck", "run", service.container):
                if not self._running(service):
                    raise ImagesError(f"{service.name} stopped: {self._logs(service)}")
                if time.monotonic() > deadline:
                    raise ImagesError(f"{service.name} never became healthy: {self._logs(service)}")
                time.sleep(min(2.0, _seconds(service.healthcheck.get("interval", "2s"))))
            log.info("%s is healthy", service.name)
        elif condition == "service_completed_successfully":
            out = self.podman.run("wait", service.container, capture=True)
            code = out.stdout.decode().strip()
            if code != "0":
                raise ImagesError(f"{service.name} exited {code}: {self._logs(service)}")
            log.info("%s completed", service.name)

    def _running(self, service: Service) -> bool:
        out = self.podman.run(
            "inspect", "--format", "{{.State.Running}}", service.container, capture=True
        )
        return out.stdout.decode().strip() == "true"

    def _logs(self, service: Service) -> str:
        try:
            out = self.podman.run("logs", "--tail", "15", service.container, capture=True)
            return (out.stdout + out.stderr).decode(errors="replace").strip()[-1500:]
        except ImagesError as exc:
            return str(exc)

    def down(self) -> None:
        """Stop and remove the containers and the project's volumes (Kafka's data, the key)."""
        for service in reversed(start_order(self.services)):
            self.podman.succeeds("rm", "-f", "-t", "10", service.container)
        volumes = self.podman.run(
            "volume",
            "ls",
            "-q",
            "--filter",
            f"label=io.podman.compose.project={PROJECT}",
            capture=True,
        )
        for volume in volumes.stdout.decode().split():
            self.podman.succeeds("volume", "rm", "-f", volume)
        self.podman.succeeds("network", "rm", "-f", f"{PROJECT}_default")


@dataclass(frozen=True)
class ComposeCheck:
    """What the compose deployment did with events published from this machine."""

    services: list[str]
    up_s: float
    events: int
    verdicts: int  # read_committed, by kcat, from the published EXTERNAL listener
    dead_letters: int
    missing: int
    duplicated: int
    answer_s: float
    scraped: dict[str, str]  # Prometheus job -> health of its targets ("up", "down", "none")
    not_started: list[str]  # services with no stand-in

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check(
    compose: Compose, photos: list[bytes], up_s: float, timeout_s: float = 300.0
) -> ComposeCheck:
    """Publish `photos` to the compose Kafka, count the answers with kcat, ask Prometheus what
    it scrapes."""
    from geoverdict_images.checks import publish, tally, wait_for_keys  # noqa: PLC0415

    kcat = shutil.which("kcat")
    if kcat is None:
        raise ImagesError("kcat is not installed (apt-get install -y kcat)")
    topics = ("geoverdict.images", "geoverdict.verdicts", "geoverdict.dead-letters")
    started = time.monotonic()
    ids = publish(EXTERNAL_KAFKA, topics[0], photos, f"compose-check-{secrets.token_hex(4)}")
    verdicts, dead = wait_for_keys(kcat, EXTERNAL_KAFKA, topics[1:], ids, timeout_s)
    answer_s = round(time.monotonic() - started, 1)
    counted = tally(ids, verdicts, dead)
    scraped = _scraped(timeout_s=60.0)
    return ComposeCheck(
        services=[s.name for s in start_order(compose.services)],
        up_s=up_s,
        events=len(ids),
        verdicts=counted.verdicts,
        dead_letters=counted.dead_letters,
        missing=counted.missing,
        duplicated=counted.duplicated,
        answer_s=answer_s,
        scraped=scraped,
        not_started=sorted(s.name for s in compose.services.values() if s.profiles),
    )


def _scraped(timeout_s: float) -> dict[str, str]:
    """Each Prometheus job's target health, once the consumer, TorchServe and Redis are scraped
    up (Prometheus scrapes every 15 s) or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/targets", timeout=5) as response:
                targets = json.load(response)["data"]["activeTargets"]
        except OSError as exc:
            raise ImagesError(f"Prometheus at {PROMETHEUS} did not answer: {exc}") from exc
        jobs: dict[str, str] = {}
        for target in targets:
            job = target["labels"]["job"]
            health = target["health"]
            jobs[job] = health if jobs.get(job, health) == health else "mixed"
        wanted = ("geoverdict-consumer", "torchserve", "redis")
        if all(jobs.get(j) == "up" for j in wanted) or time.monotonic() > deadline:
            jobs.setdefault("triton", "none")  # docker-compose.triton.yml's, not started
            return dict(sorted(jobs.items()))
        time.sleep(3.0)
