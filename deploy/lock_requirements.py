"""`make lock`: the hash-locked requirements of every install path, made with pip-tools.

- requirements/dev.lock: `make` set-up and CI (every extra);
- requirements/service.lock: the consumer image (the `service` extra, no torch);
- deploy/torchserve/requirements.lock: what the TorchServe image adds to its base image: the
  handler's packages, without torch, torchvision and what only they need (the base image's own,
  which must not be replaced), installed with --no-deps;
- deploy/geoverdict_stack/resources/triton.lock: the wheels the local stack runs Triton from
  (TRITON: no dependencies resolved, each file's hash from the wheel pip downloads here);
- deploy/triton/requirements.lock: what the Triton image adds to its base image (torch and the
  model's packages), resolved for the base image's Python 3.10 by a pip-tools running on 3.10
  (made once in .cache/pip-tools-3.10 from a python3.10 found on PATH or under pyenv, or
  $LOCK_PYTHON310).

Each is installed with `pip install --require-hashes`: a package whose hash differs from the
one recorded here is refused. Run it after changing a dependency (pyproject.toml or
deploy/torchserve/requirements.in, deploy/triton/requirements.in); it needs the network (PyPI).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COMPILE = [
    "-m",
    "piptools",
    "compile",
    "--quiet",
    "--generate-hashes",
    "--strip-extras",
    "--no-emit-find-links",
    "--no-emit-index-url",
    "--resolver=backtracking",
]
BASE_IMAGE_PACKAGES = {"torch", "torchvision"}
TRITON = ("nvidia-pytriton==0.7.0", "numpy==1.26.4")
TRITON_LOCK = Path("deploy/geoverdict_stack/resources/triton.lock")
PIP_TOOLS = "pip-tools==7.6.2"  # as the Makefile installs it for this interpreter
# The Triton image's Python (nvcr.io/nvidia/tritonserver:24.10-py3 is Ubuntu 22.04's 3.10).
TRITON_IMAGE_PYTHON = "3.10"
TRITON_IMAGE_IN = Path("deploy/triton/requirements.in")
TRITON_IMAGE_LOCK = Path("deploy/triton/requirements.lock")


def _compile(python: str, output: Path, *args: str) -> None:
    subprocess.run([python, *COMPILE, "--output-file", str(output), *args], check=True)


def _blocks(text: str) -> tuple[str, dict[str, tuple[str, set[str]]]]:
    """The header and, per package, its lines and what requires it (pip-compile's format)."""
    lines = text.splitlines()
    first = next(k for k, line in enumerate(lines) if line and not line.startswith("#"))
    header, body = "\n".join(lines[:first]), "\n".join(lines[first:])
    packages: dict[str, tuple[str, set[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", body.strip()):
        name = re.split(r"[=\[ ]", block, maxsplit=1)[0].lower()
        vias = set(re.findall(r"#\s+(?:via )?([A-Za-z0-9_.-]+)\s*$", block, re.MULTILINE))
        if re.search(r"#\s+(?:via )?-r ", block):
            vias.add("(requested)")  # named in the .in file itself: never dropped
        packages[name] = (block, {v.lower() for v in vias} - {"via"})
    return header, packages


def without_base_image(text: str) -> str:
    """A lock without torch, torchvision and what only they (or other dropped ones) need."""
    header, packages = _blocks(text)
    dropped = set(BASE_IMAGE_PACKAGES)
    changed = True
    while changed:
        changed = False
        for name, (_, vias) in packages.items():
            if name not in dropped and vias and vias <= dropped:
                dropped.add(name)
                changed = True
    kept = [block for name, (block, _) in packages.items() if name not in dropped]
    note = (
        "# torch, torchvision and what only they need come with the TorchServe base image and "
        "are left out\n# (deploy/lock_requirements.py); install with --no-deps.\n"
    )
    return header + "\n" + note + "\n" + "\n".join(kept) + "\n"


def lock_wheels(python: str, pins: tuple[str, ...], output: Path) -> None:
    """A lock of exact wheels and their SHA-256, none of their dependencies: the pins' lines
    replace those of `output`, whose comment header stays."""
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for pin in pins:
            subprocess.run(
                [
                    python,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--dest",
                    tmp,
                    pin,
                ],
                check=True,
            )
            name = pin.split("==")[0].replace("-", "_").lower()
            (wheel,) = [w for w in Path(tmp).glob("*.whl") if w.name.lower().startswith(name)]
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            lines.append(f"{pin} \\\n    --hash=sha256:{digest}")
    header = [line for line in output.read_text().splitlines() if line.startswith("#")]
    output.write_text("\n".join([*header, *lines]) + "\n")


def python_of(version: str) -> str:
    """A python`version` that runs: $LOCK_PYTHON<digits>, pyenv's, or PATH's (a pyenv shim on
    PATH may name a version that is installed but not selected)."""
    variable = f"LOCK_PYTHON{version.replace('.', '')}"
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    candidates = [
        os.environ.get(variable),
        *map(str, reversed(pyenv)),
        shutil.which(f"python{version}"),
    ]
    for candidate in filter(None, candidates):
        found = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if found.returncode == 0:
            return candidate
    raise SystemExit(
        f"python{version} not found (${variable}, pyenv or PATH): it resolves "
        f"{TRITON_IMAGE_LOCK} for the Triton image's Python"
    )


def pip_tools_for(version: str) -> str:
    """The interpreter of a pip-tools virtual environment on Python `version` (made once in
    .cache/pip-tools-<version>): a lock is resolved for the Python that resolves it."""
    venv = Path(".cache") / f"pip-tools-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([python_of(version), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", PIP_TOOLS], check=True)
    return str(python)


def lock_triton_image() -> None:
    """deploy/triton/requirements.lock: everything the Triton image installs, resolved on 3.10."""
    python = pip_tools_for(TRITON_IMAGE_PYTHON)
    _compile(python, TRITON_IMAGE_LOCK, "--allow-unsafe", str(TRITON_IMAGE_IN))


def main() -> int:
    """Write the five lock files."""
    python = sys.executable
    extras = ["--extra", "service", "--extra", "train", "--extra", "dev"]
    build = "requirements/build.in"  # setuptools and wheel, to build the project itself
    _compile(
        python, Path("requirements/dev.lock"), "--allow-unsafe", *extras, "pyproject.toml", build
    )
    _compile(
        python,
        Path("requirements/service.lock"),
        "--allow-unsafe",
        "--extra",
        "service",
        "pyproject.toml",
        build,
    )
    image = Path("deploy/torchserve/requirements.lock")
    _compile(python, image, "--allow-unsafe", "deploy/torchserve/requirements.in")
    image.write_text(without_base_image(image.read_text()))
    lock_wheels(python, TRITON, TRITON_LOCK)
    lock_triton_image()
    return 0


if __name__ == "__main__":
    sys.exit(main())
