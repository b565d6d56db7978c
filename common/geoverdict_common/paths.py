"""Where things live: from the working directory or the environment, never from where the
package is installed (an editable install of another checkout must not write there)."""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "GEOVERDICT_SHARED_DATA"


def project_dir() -> Path:
    """The working directory: commands run from a checkout's root (make does)."""
    return Path.cwd()


def shared_data_dir() -> Path:
    """The reference data: $GEOVERDICT_SHARED_DATA, else ../shared/data beside the checkout."""
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return (project_dir().parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Git-ignored cache for downloaded runtime artefacts (the Kafka jars): ./.cache."""
    return project_dir() / ".cache"


def runs_dir() -> Path:
    """Git-ignored parent of run folders (the local stack, demo, benchmarks): ./.run."""
    return project_dir() / ".run"


def model_store_dir() -> Path:
    """The model archives: ./model_store."""
    return project_dir() / "model_store"
