"""Shared fixtures: the reference data folder, and (in tests/integration.py) the real stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoverdict_common.paths import SHARED_DATA_ENV, shared_data_dir

pytest_plugins = ["tests.stack_fixtures", "tests.system.options"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $GEOVERDICT_SHARED_DATA); skips the test where it is absent."""
    path = shared_data_dir()
    if not (path / "im2gps3k-dev" / "dev.csv").is_file():
        pytest.skip(f"reference data not found at {path}; set {SHARED_DATA_ENV}")
    return path
