"""Where things live: the working directory and the environment, never the install location."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.suite import BenchOptions
from geoverdict_common import paths
from geoverdict_stack.stack import StackConfig


def test_run_cache_and_output_folders_follow_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An editable install of another checkout must not receive this checkout's results.
    monkeypatch.chdir(tmp_path)
    assert paths.runs_dir() == tmp_path / ".run"
    assert paths.cache_dir() == tmp_path / ".cache"
    assert StackConfig().run_dir == tmp_path / ".run" / "stack"
    assert StackConfig().model_store == tmp_path / "model_store"
    options = BenchOptions()
    assert options.out == tmp_path / "bench"
    assert options.docs == tmp_path / "docs" / "benchmarks.md"


def test_results_record_no_absolute_path_of_the_machine_that_ran_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    recorded = BenchOptions(
        model=Path("/elsewhere/models/demo.mar"), photos=tmp_path / "p"
    ).to_json()
    assert recorded["out"] == "bench"
    assert recorded["docs"] == "docs/benchmarks.md"
    assert recorded["photos"] == "p"
    assert recorded["model"] == "demo.mar"


def test_the_shared_data_folder_comes_from_the_environment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(paths.SHARED_DATA_ENV, str(tmp_path / "data"))
    assert paths.shared_data_dir() == tmp_path / "data"
    monkeypatch.delenv(paths.SHARED_DATA_ENV)
    monkeypatch.chdir(tmp_path)
    assert paths.shared_data_dir() == tmp_path.parent / "shared" / "data"
