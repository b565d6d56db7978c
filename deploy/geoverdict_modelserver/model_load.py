"""Which archives of a model store a server loads: TorchServe's `load_models` form, `all` or
`NAME=FILE.mar,...` (a bare `FILE.mar` is named after its stem), which Triton's entrypoint takes
too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def model_archives(load: Sequence[str]) -> dict[str, str]:
    """Model name -> archive file, from `NAME=FILE.mar` or `FILE.mar` entries."""
    models = {}
    for entry in load:
        name, sep, archive = entry.partition("=")
        if not sep:
            name, archive = Path(entry).stem, entry
        models[name.strip()] = archive.strip()
    return models


def archives_to_load(store: Path, load: str) -> list[str]:
    """File names of the archives a `load_models` value names ("all", or name=file,...)."""
    if not load:
        return []
    if load.strip() == "all":
        return sorted(p.name for p in store.glob("*.mar"))
    return list(model_archives([item for item in load.split(",") if item.strip()]).values())
