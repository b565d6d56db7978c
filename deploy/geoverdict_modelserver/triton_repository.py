"""A Triton model repository for geoverdict archives: one model per archive, its archive in the
version folder, served by Triton's Python backend through the same Responder as TorchServe.

    <repository>/<name>/config.pbtxt       the dynamic batcher, instance group, parameters
    <repository>/<name>/<version>/model.py  BOOTSTRAP: geoverdict_training.serving.triton_model
    <repository>/<name>/<version>/model.mar the archive (a link to the model store's, or a copy)
    <repository>/<name>/<version>/SHA256SUMS its digest as the model store recorded it

The model checks the archive against that SHA256SUMS before loading it (as TorchServe's
entrypoint does): the digest is copied from the store's manifest, never computed here, so an
archive the store does not list, or one changed since, is refused at load. A new model version
is a new version folder: with `version_policy: latest 1`, `POST /v2/repository/models/<name>/
load` serves it and unloads the old one, without a restart (docs/operations.md).

The Triton entrypoint (in the image and on the local stack), `python -m
geoverdict_modelserver.triton_repository` and the tests write repositories with this module;
it imports no Triton, torch or training code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geoverdict_common import archives
from geoverdict_common.exceptions import ServingConfigError
from geoverdict_common.serving import SERVING_MAX_BYTES
from geoverdict_common.triton_names import ARCHIVE, INPUT, OUTPUT
from geoverdict_modelserver.model_load import model_archives

# Triton's Python stub embeds its interpreter with a path of its own: it ignores PYTHONPATH
# (seen with Triton 2.51), so the entry point applies it (as site dirs: .pth files, editable
# installs included) before anything imports numpy, ahead of what the interpreter found by
# itself: the stub takes its prefix from PATH's python3, an activated virtual environment's
# with its numpy 2 (which misreads Triton's BYTES tensors).
BOOTSTRAP = '''"""Triton's Python-backend entry point of a geoverdict model (written by
geoverdict_modelserver.triton_repository; the code is geoverdict_training.serving.triton_model)."""

import os
import site
import sys

_found = list(sys.path)
for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    site.addsitedir(entry)
sys.path[:] = [p for p in sys.path if p not in _found] + _found

from geoverdict_training.serving.triton_model import TritonPythonModel  # noqa: E402, F401
'''


@dataclass(frozen=True)
class TritonServing:
    """How Triton serves a geoverdict model: batching, instances, and the handler's options."""

    # Requests (each of up to the client's batch of images) are merged by the dynamic batcher
    # into model batches of up to max_batch_size images, preferring these sizes, waiting at
    # most max_queue_delay_us for more. On 2 CPU cores: 2 instances of 1 torch thread each
    # (one decodes while the other computes, as TorchServe's 2 workers), batches of 8.
    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (8,)
    max_queue_delay_us: int = 5000
    kind: str = "KIND_CPU"  # KIND_GPU: `count` instances on each GPU
    count: int = 2
    threads: int = 1  # torch threads per instance (CPU)
    options: Mapping[str, str] = field(
        default_factory=lambda: {"max_image_bytes": str(SERVING_MAX_BYTES)}
    )

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "count", "threads"):
            if getattr(self, name) < 1:
                raise ServingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kind not in ("KIND_CPU", "KIND_GPU"):
            raise ServingConfigError(f"kind must be KIND_CPU or KIND_GPU, got {self.kind!r}")
        if self.max_queue_delay_us < 0:
            raise ServingConfigError("max_queue_delay_us must be >= 0")
        if any(not 1 <= size <= self.max_batch_size for size in self.preferred_batch_sizes):
            raise ServingConfigError(
                f"preferred batch sizes must be within 1..{self.max_batch_size}, "
                f"got {list(self.preferred_batch_sizes)}"
            )

    def config_pbtxt(self, name: str) -> str:
        """The model's config.pbtxt."""
        parameters = {"threads": str(self.threads), **self.options}
        params = ",\n".join(
            f'  {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
            for key, value in parameters.items()
        )
        sizes = ", ".join(str(s) for s in self.preferred_batch_sizes)
        return f"""name: "{name}"
backend: "python"
max_batch_size: {self.max_batch_size}
input [ {{ name: "{INPUT}" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "{OUTPUT}" data_type: TYPE_STRING dims: [ 1 ] }} ]
dynamic_batching {{
  preferred_batch_size: [ {sizes} ]
  max_queue_delay_microseconds: {self.max_queue_delay_us}
}}
instance_group [ {{ kind: {self.kind} count: {self.count} }} ]
version_policy: {{ latest: {{ num_versions: 1 }} }}
parameters [
{params}
]
"""


# Per GPU: batches of 64 as TorchServe's GPU serving (torchserve_gpu.GPU_SERVING), 4 instances
# to overlap one's CPU work (header checks, replies) with another's GPU work.
GPU_TRITON = TritonServing(
    max_batch_size=128,
    preferred_batch_sizes=(64,),
    max_queue_delay_us=5000,
    kind="KIND_GPU",
    count=4,
)


def add_model(
    repository: Path,
    name: str,
    archive: Path,
    serving: TritonServing | None = None,
    version: int = 1,
    link: bool = True,
) -> Path:
    """Add (or replace) version `version` of model `name`, serving `archive` of a model store
    whose SHA256SUMS lists it; returns the version folder. `link`: a symbolic link to the
    archive (the local stack) rather than a copy (an image)."""
    store, file = archive.parent, archive.name
    digest = archives.read_manifest(store).get(file)
    if digest is None or not archive.is_file():
        raise ServingConfigError(
            f"{archive} is not an archive listed in {store / archives.MANIFEST}: "
            "`geoverdict export` or `calibrate` records the archives it writes"
        )
    model = repository / name
    folder = model / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / ARCHIVE
    target.unlink(missing_ok=True)
    if link:
        target.symlink_to(archive.resolve())
    else:
        shutil.copyfile(archive, target)
    (folder / archives.MANIFEST).write_text(f"{digest}  {ARCHIVE}\n")
    (folder / "model.py").write_text(BOOTSTRAP)
    tmp = model / ".config.pbtxt.tmp"
    tmp.write_text((serving or TritonServing()).config_pbtxt(name))
    os.replace(tmp, model / "config.pbtxt")
    return folder


def write_repository(
    repository: Path,
    store: Path,
    load: Sequence[str],
    serving: TritonServing | None = None,
    link: bool = True,
) -> dict[str, Path]:
    """A repository serving `load` (`NAME=FILE.mar` or `FILE.mar` of `store`, "all": every
    archive of the store); returns model name -> version folder."""
    entries = [p.name for p in sorted(store.glob("*.mar"))] if list(load) == ["all"] else list(load)
    models: Mapping[str, str] = model_archives(entries)
    return {
        name: add_model(repository, name, store / file, serving, link=link)
        for name, file in models.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Write a repository for the archives of a model store (the Triton image's build)."""
    parser = argparse.ArgumentParser(description="a Triton model repository of geoverdict archives")
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the repository folder")
    parser.add_argument("--load", default="all", help="NAME=FILE.mar,... or all (default)")
    parser.add_argument("--gpu", action="store_true", help="the GPU instance groups and batching")
    args = parser.parse_args(argv)
    try:
        written = write_repository(
            args.out,
            args.model_store,
            args.load.split(","),
            GPU_TRITON if args.gpu else TritonServing(),
            link=False,
        )
    except ServingConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, folder in written.items():
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
