"""The TorchServe handler loads and answers with only what the serving image has: the base image
(torch, torchvision, TorchServe's Python part) and deploy/torchserve/requirements.lock, from the
code its archive carries; and that lock lists exactly what the handler imports.

Building a second virtual environment with PyTorch would take minutes and gigabytes; instead the
handler runs in a child interpreter whose imports are limited to those distributions (a finder
ahead of all others refuses any other top-level module, and geoverdict_training's training-only
layers). Everything the child imports, lazily inside a function too, goes through it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from PIL import Image

from geoverdict_common.contract import PREDICTION, errors
from tests.repo import REPO_ROOT
from tests.training.imagefiles import encoded, jpeg_bytes

LOCK = REPO_ROOT / "deploy" / "torchserve" / "requirements.lock"
REQUIREMENTS_IN = REPO_ROOT / "deploy" / "torchserve" / "requirements.in"
BASE_IMAGE = ("torch", "torchvision", "torchserve")
# What the archive may not bring: the layers that only training uses, and the other halves.
TRAINING_ONLY = (
    "geoverdict_training.train",
    "geoverdict_training.data",
    "geoverdict_training.evaluation",
    "geoverdict_training.commands",
)
BUILD_BACKEND = {"setuptools", "wheel"}  # in the lock to install the project, never imported

_CHILD = r"""
import atexit, importlib.abc, json, sys
allowed, blocked, model_dir, request = json.loads(sys.argv[1])
allowed = set(allowed)
refused = set()

class ServingImageOnly(importlib.abc.MetaPathFinder):
    # Asks the interpreter's own finders only for the serving image's modules; for any other
    # module it finds nothing, as in an image without it (find_spec probes get None too).
    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        stdlib = top in sys.stdlib_module_names or top.startswith("_sysconfigdata")
        training_only = any(name == b or name.startswith(b + ".") for b in blocked)
        if training_only or not (top in allowed or stdlib or top in sys.builtin_module_names):
            refused.add(name)
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                return spec
        return None

sys.meta_path[:] = [ServingImageOnly(list(sys.meta_path))]
atexit.register(lambda: print("refused: " + json.dumps(sorted(refused)), file=sys.stderr))
sys.path.insert(0, model_dir)  # as a TorchServe worker: the archive's code first
from types import SimpleNamespace
if request == "handler":
    import handler  # the archive's handler.py, as TorchServe loads it
    context = SimpleNamespace(
        system_properties={"model_dir": model_dir, "gpu_id": None},
        model_yaml_config={"handler": {}},
        metrics=SimpleNamespace(add_time=lambda *a, **k: None, add_metric=lambda *a, **k: None),
        get_request_header=lambda index, name: None,
    )
    bodies = [bytes.fromhex(h) for h in json.load(sys.stdin)]
    replies = handler.handle([{"body": b} for b in bodies], context)
    origin = sys.modules["geoverdict_training"].__file__
    print(json.dumps({"replies": replies, "modules": sorted(sys.modules), "origin": origin}))
else:
    __import__(request)
"""


def _top_levels(distributions: set[str]) -> set[str]:
    """The importable top-level names the distributions install."""
    by_top = importlib.metadata.packages_distributions()
    wanted = {d.lower().replace("_", "-") for d in distributions}
    return {
        top
        for top, dists in by_top.items()
        if {d.lower().replace("_", "-") for d in dists} & wanted
    }


def _closure(names: set[str]) -> set[str]:
    """The distributions and everything they require (markers evaluated here, no extras)."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in found:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here (a CUDA wheel of another platform, say)
        found.add(name)
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def _locked() -> set[str]:
    return {m.lower() for m in re.findall(r"^([A-Za-z0-9_.-]+)==", LOCK.read_text(), re.M)}


def _requested() -> set[str]:
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS_IN.read_text().splitlines()]
    return {Requirement(line).name.lower() for line in lines if line}


def _serving_image() -> set[str]:
    """Top-level modules of the serving image: base image, the lock, the archive's packages."""
    return _top_levels(_closure(set(BASE_IMAGE)) | _locked()) | {
        "geoverdict_training",
        "geoverdict_common",
        "handler",
    }


def _run(model_dir: Path, request: str, bodies: list[bytes] | None = None) -> Any:
    argument = json.dumps([sorted(_serving_image()), TRAINING_ONLY, str(model_dir), request])
    return subprocess.run(
        [sys.executable, "-c", _CHILD, argument],
        input=json.dumps([b.hex() for b in bodies or []]),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=model_dir,
    )


@pytest.fixture(scope="module")
def model_dir(tiny_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model_dir")
    with zipfile.ZipFile(tiny_archive) as archive:
        archive.extractall(folder)
    return folder


def test_the_handler_answers_photos_with_only_the_serving_image(model_dir: Path) -> None:
    rotated = Image.new("RGB", (60, 40), (200, 200, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    bodies = [
        jpeg_bytes((64, 48)),
        encoded(rotated, "JPEG", exif=exif),
        encoded(Image.new("RGBA", (30, 20), (0, 90, 0, 128)), "PNG"),
        encoded(Image.new("RGB", (32, 32), (10, 20, 200)), "HEIF"),
        b"a text, not an image",
    ]
    out = _run(model_dir, "handler", bodies)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    replies = result["replies"]
    assert [errors(PREDICTION, r) for r in replies] == [[]] * len(bodies)
    assert ["error" in r for r in replies] == [False, False, False, False, True]
    assert replies[1]["image"]["width"] == 40  # displayed upright: EXIF orientation applied
    assert replies[3]["image"]["format"] == "HEIF"
    # The archive's own copy of the code answered, and none of the training-only layers.
    assert result["origin"].startswith(str(model_dir))
    loaded = set(result["modules"])
    assert not [m for m in loaded if m.startswith(TRAINING_ONLY)]
    # requirements.in names nothing the handler does not import (it could not import anything
    # outside the lock and the base image: the child refused it).
    imported = {m.partition(".")[0] for m in loaded}
    for requirement in _requested() - BUILD_BACKEND:
        assert _top_levels({requirement}) & imported, f"the handler never imports {requirement}"


def test_training_only_code_or_packages_outside_the_lock_cannot_load_there(
    model_dir: Path,
) -> None:
    # The guard itself: what the handler must not drag in fails to import in that child.
    assert "msgpack" not in _locked()
    for module, refused in [
        ("geoverdict_training.data.shards", "geoverdict_training.data"),
        ("msgpack", "msgpack"),
        ("geoverdict_service", "geoverdict_service"),
    ]:
        out = _run(model_dir, module)
        assert out.returncode != 0, f"{module} imported in the serving image"
        assert "ModuleNotFoundError" in out.stderr
        assert refused in json.loads(out.stderr.rsplit("refused: ", 1)[1])
