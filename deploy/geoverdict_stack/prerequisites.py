"""The programs the local stack runs: find them, check versions, fetch the Kafka jars."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from geoverdict_common.paths import cache_dir
from geoverdict_stack import resources
from geoverdict_stack.exceptions import DownloadError, PrerequisiteError

log = logging.getLogger(__name__)

MIN_JAVA = 17


@dataclass(frozen=True)
class Prerequisite:
    """One program the stack needs, where it was found and its version."""

    name: str
    path: str
    version: str


def java() -> Prerequisite:
    """Java 17 or newer (Kafka 4 and TorchServe 0.12 both need it)."""
    path = shutil.which("java")
    if path is None:
        raise PrerequisiteError(
            "Java is not installed; install Java 17+ (apt-get install -y openjdk-17-jre-headless)"
        )
    out = subprocess.run(
        [path, "-version"], capture_output=True, text=True, check=False, timeout=30
    )
    text = out.stderr + out.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        raise PrerequisiteError(f"could not read the Java version from `java -version`: {text!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise PrerequisiteError(
            f"Java {major} found at {path}, but Kafka 4 and TorchServe 0.12 need Java {MIN_JAVA}+; "
            "install openjdk-17-jre-headless and put it first on PATH (or set JAVA_HOME)"
        )
    return Prerequisite("java", path, str(major))


def maven() -> Prerequisite:
    """Maven, to fetch the Kafka jars from Maven Central."""
    path = shutil.which("mvn")
    if path is None:
        raise PrerequisiteError(
            "Maven (mvn) is not installed; install it (apt-get install -y maven)"
        )
    return Prerequisite("mvn", path, "")


def redis_server() -> Prerequisite:
    """The real redis-server binary on PATH."""
    path = shutil.which("redis-server")
    if path is None:
        raise PrerequisiteError(
            "redis-server is not installed; install it (apt-get install -y redis-server)"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v=(\S+)", out.stdout)
    return Prerequisite("redis-server", path, match.group(1) if match else "")


def torchserve() -> Prerequisite:
    """TorchServe's launcher, installed beside this Python (the `train` extra)."""
    candidate = Path(sys.executable).parent / "torchserve"
    path = str(candidate) if candidate.exists() else shutil.which("torchserve")
    if path is None:
        raise PrerequisiteError(
            "torchserve is not installed in this environment; install the train extra "
            "(pip install -e '.[train]', which `make test` does)"
        )
    return Prerequisite("torchserve", path, "")


def kafka_libs_dir() -> Path:
    """Where the Kafka jars are cached (git-ignored)."""
    return cache_dir() / "kafka" / "libs"


def kafka_jars(fetch: bool = True) -> Path:
    """The folder of Kafka broker jars, fetched with Maven when missing or the pom changed."""
    libs = kafka_libs_dir()
    stamp = libs / ".fetched"  # holds the digest of the pom the jars were fetched with
    wanted = resources.digest(resources.KAFKA_POM)
    if stamp.exists() and stamp.read_text().strip() == wanted:
        verify_jars(libs)  # what runs is what was pinned, also when the cache was touched
        return libs
    if not fetch:
        raise PrerequisiteError("the Kafka jars are not fetched yet; run `geoverdict stack fetch`")
    mvn = maven()
    log.info("fetching the Apache Kafka jars from Maven Central into %s", libs)
    shutil.rmtree(libs, ignore_errors=True)
    pom = resources.copy_to(resources.KAFKA_POM, libs.parent)
    cmd = [
        mvn.path,
        "-q",
        "--strict-checksums",  # Maven Central's own checksums, then ours below
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        detail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise DownloadError(
            "could not fetch the Kafka jars from Maven Central (is the network or a Maven "
            "mirror reachable? see ~/.m2/settings.xml): " + " | ".join(detail)
        )
    verify_jars(libs)
    stamp.write_text(wanted + "\n")
    return libs


def verify_jars(libs: Path) -> None:
    """Every jar is one pinned in resources/kafka-jars.sha256, with that SHA-256, and none is
    missing: a jar swapped in the cache or on the way from Maven is refused."""
    pinned: dict[str, str] = {}
    for line in resources.text(resources.KAFKA_JAR_HASHES).splitlines():
        digest, _, name = line.partition("  ")
        pinned[name.strip()] = digest.strip()
    present = {path.name: path for path in libs.glob("*.jar")}
    problems = [f"{name}: not pinned" for name in sorted(set(present) - set(pinned))]
    problems += [f"{name}: missing" for name in sorted(set(pinned) - set(present))]
    for name in sorted(set(present) & set(pinned)):
        if hashlib.sha256(present[name].read_bytes()).hexdigest() != pinned[name]:
            problems.append(f"{name}: SHA-256 differs from the pinned one")
    if problems:
        raise DownloadError(
            f"the Kafka jars in {libs} are not the pinned ones ({'; '.join(problems[:4])}): "
            "delete the folder and run `geoverdict stack fetch`; if the pom changed on purpose, "
            "update resources/kafka-jars.sha256"
        )


def triton_dir() -> Path:
    """Where the Triton wheels of resources/triton.lock are installed (git-ignored)."""
    return cache_dir() / "triton"


@dataclass(frozen=True)
class Triton:
    """Triton from the pinned nvidia-pytriton wheel: what running it as a plain process takes."""

    home: Path  # the --target folder: numpy 1.26 for the stub, the wheel's files

    @property
    def server(self) -> Path:
        """The tritonserver binary."""
        return self.home / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        """The wheel's backends folder (the Python backend without its stub)."""
        return self.home / "pytriton" / "tritonserver" / "backends"

    def stub(self) -> Path:
        """The Python backend's stub for this interpreter's version."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.home / "pytriton" / "tritonserver" / "python_backend_stubs" / version
        path = stub / "triton_python_backend_stub"
        if not path.is_file():
            raise PrerequisiteError(f"the pinned Triton has no Python backend stub for {version}")
        return path

    @property
    def libraries(self) -> list[Path]:
        """LD_LIBRARY_PATH: the wheel's own libraries and this interpreter's libpython."""
        libdir = sysconfig.get_config_var("LIBDIR")
        return [self.home / "nvidia_pytriton.libs", *([Path(libdir)] if libdir else [])]


def triton(fetch: bool = True) -> Triton:
    """Triton, installed from resources/triton.lock (hash-checked) when missing or the lock
    changed."""
    home = triton_dir()
    stamp = home / ".installed"  # holds the digest of the lock it was installed from
    wanted = resources.digest(resources.TRITON_LOCK)
    found = Triton(home)
    if stamp.exists() and stamp.read_text().strip() == wanted and found.server.is_file():
        return found
    if not fetch:
        raise PrerequisiteError("Triton is not installed yet; run `geoverdict stack fetch`")
    log.info("installing Triton (nvidia-pytriton, hash-checked) into %s", home)
    shutil.rmtree(home, ignore_errors=True)
    lock = resources.copy_to(resources.TRITON_LOCK, home.parent / "triton-lock")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--target",
        str(home),
        "-r",
        str(lock),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not found.server.is_file():
        detail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise DownloadError(
            "could not install Triton from PyPI (nvidia-pytriton, numpy; is PyPI or a pip "
            "mirror reachable?): " + " | ".join(detail)
        )
    stamp.write_text(wanted + "\n")
    return found


def check_all() -> list[Prerequisite]:
    """Every prerequisite, raising the first problem found."""
    found = [java(), redis_server(), torchserve()]
    kafka_jars(fetch=True)
    found.append(Prerequisite("kafka", str(kafka_libs_dir()), kafka_version()))
    found.append(Prerequisite("tritonserver", str(triton(fetch=True).server), "2.51.0"))
    return found


def kafka_version() -> str:
    """The Kafka version of the cached jars, from the jar's file name."""
    for jar in kafka_libs_dir().glob("kafka_2.13-*.jar"):
        return jar.stem.removeprefix("kafka_2.13-")
    return ""
