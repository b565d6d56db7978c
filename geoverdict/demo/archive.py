"""The model archive a command serves: the one named, else the newest in model_store/."""

from __future__ import annotations

from pathlib import Path

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
