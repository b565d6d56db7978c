"""The project's images and the stand-in bases they build on where registries are out of reach.

A stand-in (deploy/stand-ins/) starts from a root file system that debootstrap makes from
Debian's or Ubuntu's archive, imported into podman once; it adds only what the image's
Dockerfile relies on of its official base, and is selected by the Dockerfile's BASE_IMAGE build
argument. Root file systems are cached under .cache/images/ (git-ignored)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geoverdict_common.paths import cache_dir, project_dir
from geoverdict_images.exceptions import ImagesError
from geoverdict_images.podman import Podman

log = logging.getLogger(__name__)

STAND_IN_PREFIX = "localhost/geoverdict-stand-in"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")  # update-ca-certificates' local CAs


@dataclass(frozen=True)
class Keyring:
    """The archive keys debootstrap checks a suite with, from a package pinned by SHA-256 (for
    a distribution whose keyring the building machine lacks: Ubuntu's, on Debian)."""

    url: str
    sha256: str
    member: str  # the keyring's path inside the package


@dataclass(frozen=True)
class Root:
    """A root file system debootstrap makes: a distribution's suite from its archive."""

    name: str  # the podman image: STAND_IN_PREFIX/name
    suite: str
    mirror: str
    keyring: Keyring | None = None  # None: the machine's own (Debian's)

    @property
    def image(self) -> str:
        return f"{STAND_IN_PREFIX}/{self.name}"


@dataclass(frozen=True)
class Download:
    """A file a stand-in's build context needs, fetched once and pinned by SHA-256."""

    url: str
    sha256: str

    def fetch(self) -> Path:
        path = cache_dir() / "images" / "downloads" / self.sha256[:16] / self.url.rsplit("/", 1)[-1]
        if path.is_file():
            return path
        try:
            with urllib.request.urlopen(self.url, timeout=120) as response:
                data = response.read()
        except OSError as exc:
            raise ImagesError(f"cannot fetch {self.url}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ImagesError(f"{self.url} is not the pinned file (SHA-256 differs)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


@dataclass(frozen=True)
class StandIn:
    """A stand-in for an official image: a base the project's Dockerfiles build on, or a
    third-party server that docker-compose.stand-ins.yml runs in the official image's place."""

    name: str  # deploy/stand-ins/<name>/Containerfile
    replaces: str  # the official image it stands in for
    root: Root
    # The fixed name docker-compose.stand-ins.yml runs it by (bases are passed by their tag).
    alias: str | None = None
    # What else its build context holds, made by the function (and named in its tag).
    context: Callable[[Path], None] | None = None
    pins: str = ""


@dataclass(frozen=True)
class Image:
    """One of the project's images."""

    name: str
    dockerfile: str  # from the repository's root, which is the build context
    stand_in: StandIn

    @property
    def tag(self) -> str:
        return f"localhost/geoverdict/{self.name}:dev"


BOOKWORM = Root("debian:bookworm", "bookworm", "http://deb.debian.org/debian")
JAMMY = Root(
    "ubuntu:jammy",
    "jammy",
    "http://archive.ubuntu.com/ubuntu",
    Keyring(
        "http://archive.ubuntu.com/ubuntu/pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb",
        "0d0e7ed6b112f5d03eabf3c7eb01ebdacf9c57714b279e90495cfc58c8c4520f",
        "usr/share/keyrings/ubuntu-archive-keyring.gpg",
    ),
)
# The Kafka tools the compose file calls (kafka-topics.sh, kafka-broker-api-versions.sh) are in
# kafka-tools, which the project's broker jars do not need.
KAFKA_TOOLS = Download(
    "https://repo1.maven.org/maven2/org/apache/kafka/kafka-tools/4.1.1/kafka-tools-4.1.1.jar",
    "8a6939f310a61119cedaffc144119e9b2a374e32a7ec18f78e49ce5aeb71d6b0",
)


def _kafka_context(context: Path) -> None:
    """libs/: the project's Kafka jars (SHA-256 checked when fetched) and kafka-tools."""
    from geoverdict_stack import prerequisites  # noqa: PLC0415

    libs = context / "libs"
    libs.mkdir()
    for jar in prerequisites.kafka_jars(fetch=True).glob("*.jar"):
        shutil.copy(jar, libs / jar.name)
    shutil.copy(KAFKA_TOOLS.fetch(), libs)


COMPOSE_TAG = STAND_IN_PREFIX + "/{}:compose"
STAND_INS = {
    "python": StandIn("python", "python:3.11-slim-bookworm", BOOKWORM),
    "torchserve": StandIn("torchserve", "pytorch/torchserve:0.12.0-cpu", BOOKWORM),
    "triton": StandIn("triton", "nvcr.io/nvidia/tritonserver:24.10-py3", JAMMY),
    "kafka": StandIn(
        "kafka",
        "apache/kafka:4.1.1",
        BOOKWORM,
        alias=COMPOSE_TAG.format("kafka"),
        context=_kafka_context,
        pins=f"kafka 4.1.1 {KAFKA_TOOLS.sha256}",
    ),
    "redis": StandIn("redis", "redis:8.4.0-alpine", BOOKWORM, alias=COMPOSE_TAG.format("redis")),
    "redis-exporter": StandIn(
        "redis-exporter",
        "oliver006/redis_exporter:v1.84.0",
        BOOKWORM,
        alias=COMPOSE_TAG.format("redis-exporter"),
    ),
    "prometheus": StandIn(
        "prometheus",
        "prom/prometheus:v3.5.0",
        BOOKWORM,
        alias=COMPOSE_TAG.format("prometheus"),
    ),
    "nginx": StandIn(
        "nginx",
        "nginxinc/nginx-unprivileged:1.29-alpine",
        BOOKWORM,
        alias=COMPOSE_TAG.format("nginx"),
    ),
    "pause": StandIn(
        "pause", "registry.k8s.io/pause:3.10", BOOKWORM, alias=COMPOSE_TAG.format("pause")
    ),
}
# What docker-compose.stand-ins.yml runs in place of images that cannot be pulled here, and
# what the one-node cluster (deploy/cluster/) runs for the chart's third-party images.
COMPOSE_STAND_INS = tuple(STAND_INS[n] for n in ("kafka", "redis", "redis-exporter", "prometheus"))
CLUSTER_STAND_INS = tuple(STAND_INS[n] for n in ("nginx", "redis", "redis-exporter", "pause"))
IMAGES = {
    "consumer": Image("consumer", "deploy/consumer/Dockerfile", STAND_INS["python"]),
    "torchserve": Image("torchserve", "deploy/torchserve/Dockerfile", STAND_INS["torchserve"]),
    "triton": Image("triton", "deploy/triton/Dockerfile", STAND_INS["triton"]),
}


@dataclass(frozen=True)
class Built:
    """What a build made."""

    image: str
    base: str
    seconds: float
    size_mb: float


def ensure_root(podman: Podman, root: Root) -> None:
    """The root file system as a podman image (debootstrap once, cached)."""
    if podman.exists(root.image):
        return
    if shutil.which("debootstrap") is None:
        raise ImagesError("debootstrap is not installed (apt-get install -y debootstrap)")
    folder = cache_dir() / "images" / "roots" / root.name.replace(":", "-")
    if not (folder / "etc" / "os-release").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        log.info("debootstrap %s from %s into %s (about a minute)", root.suite, root.mirror, folder)
        keyring = [f"--keyring={_keyring(root.keyring)}"] if root.keyring else []
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", *keyring, root.suite, str(folder), root.mirror],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stdout.decode(errors="replace").strip().splitlines()[-5:]
            raise ImagesError(f"debootstrap {root.suite} failed: " + " | ".join(tail))
    log.info("importing %s as %s", folder, root.image)
    podman.import_tree(folder, root.image)


def _keyring(keyring: Keyring) -> Path:
    """The keyring file, from its package fetched once and checked against its SHA-256."""
    folder = cache_dir() / "images" / "keyrings" / keyring.sha256[:16]
    path = folder / keyring.member
    if path.is_file():
        return path
    package = Download(keyring.url, keyring.sha256).fetch()
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(package), str(folder)], check=True)
    return path


def _host_cas() -> list[Path]:
    """The certificate authorities this machine adds to the public ones (an egress proxy that
    inspects TLS, for one)."""
    return sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []


def stand_in_tag(stand_in: StandIn) -> str:
    """The stand-in's tag: a digest of what it is built from (its folder, its root, the
    machine's CAs), so that a change builds it again and an unchanged one is reused."""
    folder = project_dir() / "deploy" / "stand-ins" / stand_in.name
    digest = hashlib.sha256(f"{stand_in.root.image}\0{stand_in.pins}".encode())
    for path in [*sorted(p for p in folder.rglob("*") if p.is_file()), *_host_cas()]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{STAND_IN_PREFIX}/{stand_in.name}:{digest.hexdigest()[:12]}"


def ensure_stand_in(podman: Podman, stand_in: StandIn) -> str:
    """The stand-in image (built on its root unless this version is there already); its tag."""
    tag = stand_in_tag(stand_in)
    if podman.exists(tag):
        if stand_in.alias:
            podman.run("tag", tag, stand_in.alias)
        return tag
    ensure_root(podman, stand_in.root)
    folder = project_dir() / "deploy" / "stand-ins" / stand_in.name
    log.info("building the stand-in for %s: %s", stand_in.replaces, tag)
    with tempfile.TemporaryDirectory(prefix="geoverdict-stand-in-") as context:
        shutil.copytree(folder, context, dirs_exist_ok=True)
        # The stand-in trusts what the machine trusts, as an official base trusts the public
        # authorities. Never in a published image: stand-ins are not published.
        extra = Path(context) / "ca"
        extra.mkdir()
        for cert in _host_cas():
            shutil.copy(cert, extra / cert.name)
        if stand_in.context:
            stand_in.context(Path(context))
        podman.build(
            tag, Path(context) / "Containerfile", Path(context), [f"ROOT={stand_in.root.image}"]
        )
    if stand_in.alias:
        podman.run("tag", tag, stand_in.alias)
    return tag


def build(podman: Podman, image: Image, stand_in: bool) -> Built:
    """Build one image from the repository: on its stand-in base, or on its official one."""
    base_args = []
    base = "the Dockerfile's pinned base"
    if stand_in:
        base = ensure_stand_in(podman, image.stand_in)
        base_args = [f"BASE_IMAGE={base}"]
    started = time.monotonic()
    log.info("building %s from %s on %s", image.tag, image.dockerfile, base)
    podman.build(image.tag, project_dir() / image.dockerfile, project_dir(), base_args)
    seconds = round(time.monotonic() - started, 1)
    return Built(image.tag, base, seconds, podman.size_mb(image.tag))
