"""Every install path is hash-locked: make and CI, the consumer image, the TorchServe image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.repo import REPO_ROOT

LOCKS = {
    "dev": REPO_ROOT / "requirements" / "dev.lock",
    "service": REPO_ROOT / "requirements" / "service.lock",
    "torchserve": REPO_ROOT / "deploy" / "torchserve" / "requirements.lock",
}


def pinned(lock: Path) -> dict[str, str]:
    """Package -> version of a lock; every one must carry hashes."""
    text = lock.read_text()
    found = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            assert "--hash=sha256:" in block, f"{lock.name}: {match[1]} has no hash"
            found[match[1].lower().replace("_", "-")] = match[2]
    return found


def requirement_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


@pytest.mark.parametrize(
    ("lock", "extras"), [("dev", ("service", "train", "dev")), ("service", ("service",))]
)
def test_each_lock_pins_every_dependency_of_its_extras(lock: str, extras: tuple[str, ...]) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = requirement_names(project["dependencies"])
    for extra in extras:
        wanted |= requirement_names(project["optional-dependencies"][extra])
    versions = pinned(LOCKS[lock])
    assert wanted <= set(versions), sorted(wanted - set(versions))
    assert {"setuptools", "wheel"} <= set(versions)  # the project is built without isolation


def test_the_service_lock_has_no_torch_and_the_image_lock_keeps_the_base_image_s() -> None:
    assert not {"torch", "torchvision"} & set(pinned(LOCKS["service"]))
    image = pinned(LOCKS["torchserve"])
    assert {"timm", "pillow", "numpy"} <= set(image)
    assert not {"torch", "torchvision", "triton"} & set(image)
    assert not any(name.startswith("nvidia-") for name in image)


def test_every_install_path_checks_hashes() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r $(LOCK)" in makefile
    consumer = (REPO_ROOT / "deploy" / "consumer" / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/service.lock" in consumer
    torchserve = (REPO_ROOT / "deploy" / "torchserve" / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r /tmp/requirements.lock" in torchserve
