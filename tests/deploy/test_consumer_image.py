"""In what the consumer's image installs, `geoverdict --help` lists only commands that run there.

deploy/consumer/Dockerfile is followed without an engine: a fresh virtual environment gets the
image's lock (hash-checked, from pip's cache or the index) and then the project, without its
dependencies, from a copy of exactly what the Dockerfile copies. No torch, no training code,
no stack launcher: `locate` and `demo` must not be offered, and every command offered must at
least parse its options there.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.repo import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "consumer" / "Dockerfile"
# What pip says when the lock's wheels are neither in its cache nor reachable.
OFFLINE = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
)

pytestmark = pytest.mark.slow


def dockerfile_steps() -> tuple[str, list[tuple[list[str], str]]]:
    """The lock the image installs, and its COPY steps (sources, destination)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    match = re.search(r"pip install --require-hashes -r (\S+)", text)
    assert match, "the consumer image installs a hash-checked lock"
    copies = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue  # a comment is prose, not shell words
        words = shlex.split(line)
        if words and words[0] == "COPY":
            assert not any(w.startswith("--") for w in words[1:]), line  # none of --from etc.
            copies.append((words[1:-1], words[-1]))
    assert "pip install --no-deps --no-build-isolation ." in text
    return match[1], copies


def image_tree(root: Path) -> Path:
    """The image's WORKDIR as the Dockerfile leaves it before installing the project."""
    _, copies = dockerfile_steps()
    for sources, destination in copies:
        target = root / destination
        for source in sources:
            path = REPO_ROOT / source
            into = target / path.name if destination.endswith("/") and path.is_file() else target
            if path.is_dir():
                shutil.copytree(path, into, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into)
    return root


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command with nothing of this checkout on its path (env.sh's PYTHONPATH dropped)."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=env, cwd=cwd, timeout=900
    )


@pytest.fixture(scope="module")
def image_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a virtual environment installed as the consumer's image is."""
    root = tmp_path_factory.mktemp("consumer-image")
    app = image_tree(root / "app")
    subprocess.run([sys.executable, "-m", "venv", root / "venv"], check=True)
    python = root / "venv" / "bin" / "python"
    lock, _ = dockerfile_steps()
    pip = ("-m", "pip", "install", "-q", "--disable-pip-version-check")
    installed = run(python, *pip, "--require-hashes", "-r", app / lock, cwd=root)
    if installed.returncode != 0 and any(sign in installed.stderr for sign in OFFLINE):
        pytest.skip(f"the wheels of {lock} are neither cached nor downloadable")
    assert installed.returncode == 0, installed.stderr[-3000:]
    project = run(python, *pip, "--no-deps", "--no-build-isolation", app, cwd=root)
    assert project.returncode == 0, project.stderr[-3000:]
    return python.parent


def listed(help_text: str) -> set[str]:
    """The commands of `geoverdict --help` (argparse indents each by four spaces)."""
    return set(re.findall(r"^    (\w[\w-]*)", help_text, re.MULTILINE))


def test_the_image_has_no_torch_training_code_or_stack_launcher(image_bin: Path) -> None:
    for module in ("torch", "geoverdict_training", "geoverdict_stack"):
        found = run(image_bin / "python", "-c", f"import {module}", cwd=image_bin)
        assert found.returncode != 0, f"{module} is importable in the consumer's image"
    service = run(image_bin / "python", "-c", "import geoverdict_service.consumer", cwd=image_bin)
    assert service.returncode == 0, service.stderr[-3000:]


def test_every_command_listed_in_the_consumer_image_runs_there(image_bin: Path) -> None:
    help_out = run(image_bin / "geoverdict", "--help", cwd=image_bin)
    assert help_out.returncode == 0, help_out.stderr[-3000:]
    commands = listed(help_out.stdout)
    assert {"consume", "publish", "watch", "mismatch", "capacity"} <= commands
    assert not {"locate", "demo", "stack", "train", "export"} & commands
    for command in sorted(commands):
        out = run(image_bin / "geoverdict", command, "--help", cwd=image_bin)
        assert out.returncode == 0, f"geoverdict {command} --help: {out.stderr[-3000:]}"
        assert "Traceback" not in out.stderr, command
    # A command the image cannot run is refused as unknown, never a ModuleNotFoundError.
    refused = run(image_bin / "geoverdict", "locate", "photo.jpg", cwd=image_bin)
    assert refused.returncode == 2 and "invalid choice: 'locate'" in refused.stderr
    assert "Traceback" not in refused.stderr
