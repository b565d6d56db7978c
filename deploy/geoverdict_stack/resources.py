"""Files the stack ships inside its package (found with importlib.resources, not by path
arithmetic): the Kafka jars' pom, Redis' users, the lock of the Triton wheels; docker-compose
uses the same Redis users. TorchServe's configuration ships with geoverdict_modelserver."""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

KAFKA_POM = "kafka-jars.pom.xml"
KAFKA_JAR_HASHES = "kafka-jars.sha256"  # `sha256sum *.jar` of the fetched jars, pinned
REDIS_USERS = "redis-users.acl"
TRITON_LOCK = "triton.lock"  # the hash-locked wheels the local stack runs Triton from


def text(name: str) -> str:
    """One shipped file's content."""
    return importlib.resources.files("geoverdict_stack").joinpath("resources", name).read_text()


def digest(name: str) -> str:
    """SHA-256 of one shipped file (tells whether a copy made earlier is current)."""
    return hashlib.sha256(text(name).encode()).hexdigest()


def copy_to(name: str, folder: Path) -> Path:
    """Write one shipped file into `folder` (programs such as Maven and Java want a path)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_text(text(name))
    return target
