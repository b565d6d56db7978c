"""The model archive a command serves: the one named, else the newest in model_store/; and the
baselines its metadata keeps (read without loading the model)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from geoverdict_common.paths import model_store_dir


def find_archive(explicit: Path | None) -> Path:
    """The model archive to serve."""
    from geoverdict_service.exceptions import InvalidSettingsError  # noqa: PLC0415

    if explicit is not None:
        if not explicit.is_file():
            raise InvalidSettingsError(f"model archive {explicit} not found")
        return explicit.resolve()
    store = model_store_dir()
    archives = sorted(store.glob("*.mar"))
    if not archives:
        raise InvalidSettingsError(
            f"no model archive in {store}: run from the repository's root, give --model, "
            "or build one with `geoverdict export`"
        )
    return max(archives, key=lambda p: p.stat().st_mtime)


def archive_baselines(archive: Path) -> dict[str, Any]:
    """The training photos' baselines in the archive's metadata.json ({} where it has none or
    cannot be read: the demo then prints the model's accuracy alone)."""
    try:
        with zipfile.ZipFile(archive) as mar:
            metadata = json.loads(mar.read("metadata.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    baselines = metadata.get("baselines") if isinstance(metadata, dict) else None
    return dict(baselines) if isinstance(baselines, dict) else {}
