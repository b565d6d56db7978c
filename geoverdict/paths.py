"""Where the project keeps things: its root, the shared reference data, run folders."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_ENV = "GEOVERDICT_SHARED_DATA"


def shared_data_dir() -> Path:
    """The reference data folder: $GEOVERDICT_SHARED_DATA, else ../shared/data beside the repo."""
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Git-ignored cache for downloaded runtime artefacts (Kafka jars)."""
    return PROJECT_ROOT / ".cache"


def runs_dir() -> Path:
    """Git-ignored parent of the local stack's run folders (data and logs)."""
    return PROJECT_ROOT / ".run"
