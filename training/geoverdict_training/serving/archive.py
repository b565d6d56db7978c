"""A model archive (.mar, TorchServe's format, a zip): written, read back, rewritten.

The .mar holds the bundle (weights.pt, metadata.json: spec, partitions, hierarchy, label
names, input transform, temperatures, model version), model-config.yaml (batching, workers,
timeouts, the handler's limits), the handler, and the code it imports: geoverdict_common and the
layers of geoverdict_training that serving needs (geo, images, models, inference, serving; no
training, data or evaluation code), as they are. So a model server's Python needs the
third-party libraries of deploy/torchserve/requirements.in, not this project. An archive
re-written with a new bundle (`geoverdict calibrate`) keeps its model-config.yaml and gets the
current code.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

from geoverdict_common import archives
from geoverdict_training.exceptions import ExportError
from geoverdict_training.serving.bundle import ModelBundle, write_bundle

HANDLER = "handler.py"  # of this package
# What the handler imports: geoverdict_training's serving layers and their root modules, and
# what it shares with the service (geoverdict_common: EXIF reading, the serving settings).
SERVING_LAYERS = ("geo", "images", "models", "inference", "serving")
ROOT_FILES = ("__init__.py", "exceptions.py", "vocabulary.py", "places365_categories.txt")


def _package_dir(name: str) -> Path:
    """The folder of an importable package (to copy its code into an archive)."""
    folder = Path(str(importlib.resources.files(name)))
    if not (folder / "__init__.py").is_file():
        raise ExportError(f"the package {name} has no source folder to copy ({folder})")
    return folder


def _stage_code(folder: Path) -> Path:
    """The code the handler imports, laid out as packages under folder/code, as it is (no
    stand-in packages): geoverdict_common whole, geoverdict_training's serving layers."""
    code = folder / "code"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(_package_dir("geoverdict_common"), code / "geoverdict_common", ignore=skip)
    training = _package_dir("geoverdict_training")
    (code / "geoverdict_training").mkdir(parents=True)
    for name in ROOT_FILES:
        shutil.copyfile(training / name, code / "geoverdict_training" / name)
    for layer in SERVING_LAYERS:
        shutil.copytree(training / layer, code / "geoverdict_training" / layer, ignore=skip)
    return code


_ARCHIVER = threading.Lock()


@contextlib.contextmanager
def _archiver_tempdir(folder: Path) -> Iterator[None]:
    """torch-model-archiver stages files in gettempdir()/<model name> and first deletes what it
    finds there, so two exports of one name at once (two processes, parallel tests) would mix
    their files; each export gets its own."""
    with _ARCHIVER:
        previous = tempfile.tempdir
        tempfile.tempdir = str(folder)
        try:
            yield
        finally:
            tempfile.tempdir = previous


def write_archive(bundle: ModelBundle, model_config: str, store: Path) -> Path:
    """Write STORE/NAME.mar of `bundle` with the given model-config.yaml text."""
    from model_archiver.model_archiver_config import ModelArchiverConfig  # noqa: PLC0415
    from model_archiver.model_archiver_error import ModelArchiverError  # noqa: PLC0415
    from model_archiver.model_packaging import generate_model_archive  # noqa: PLC0415

    if not bundle.partitions:
        raise ExportError(f"{bundle.name} is a scene-only model: it cannot serve locations")
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="geoverdict-export-") as tmp:
        stage = Path(tmp)
        weights, metadata = write_bundle(bundle, stage / "bundle")
        config_file = stage / "model-config.yaml"
        config_file.write_text(model_config, encoding="utf-8")
        code = _stage_code(stage)
        config = ModelArchiverConfig(
            model_name=bundle.name,
            handler=str(_package_dir("geoverdict_training") / "serving" / HANDLER),
            version=bundle.version.rsplit("-", 1)[-1],
            serialized_file=str(weights),
            extra_files=f"{metadata},{code}",
            export_path=str(store),
            force=True,
            config_file=str(config_file),
        )
        try:
            with _archiver_tempdir(stage):
                generate_model_archive(config)
        except (ModelArchiverError, ValueError, OSError) as exc:
            raise ExportError(f"torch-model-archiver failed: {exc}") from exc
    return store / f"{bundle.name}.mar"


def model_config_of(archive: Path) -> str:
    """The model-config.yaml text of an archive."""
    try:
        with zipfile.ZipFile(archive) as opened:
            return opened.read("model-config.yaml").decode("utf-8")
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ExportError(f"{archive}: no readable model-config.yaml: {exc}") from exc


def rewrite_archive(bundle: ModelBundle, model_config: str, out: Path) -> Path:
    """Write `bundle` as the archive `out`, replacing it only once the new one is complete
    (the new file is built beside it, then renamed over it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".geoverdict-archive-", dir=out.parent) as tmp:
        built = write_archive(bundle, model_config, Path(tmp))
        os.replace(built, out)
    archives.record(out)
    return out
