"""A Triton model repository of archives: batching and instances as configured, each archive
beside the digest its model store recorded, an archive the store does not list refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from geoverdict_common import archives
from geoverdict_common.exceptions import ServingConfigError
from geoverdict_common.triton_names import ARCHIVE
from geoverdict_modelserver.triton_repository import (
    BOOTSTRAP,
    GPU_TRITON,
    TritonServing,
    add_model,
    write_repository,
)


def _store(tmp_path: Path, *names: str) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    for name in names:
        (store / name).write_bytes(f"archive {name}".encode())
        archives.record(store / name)
    return store


def test_the_config_batches_and_places_instances_as_told() -> None:
    text = TritonServing().config_pbtxt("geoverdict")
    assert 'name: "geoverdict"' in text and 'backend: "python"' in text
    assert "max_batch_size: 64" in text
    assert re.search(r"preferred_batch_size: \[ 8 \]", text)
    assert "instance_group [ { kind: KIND_CPU count: 2 } ]" in text
    assert "version_policy: { latest: { num_versions: 1 } }" in text
    assert '{ key: "threads" value: { string_value: "1" } },' in text  # entries comma-separated
    gpu = GPU_TRITON.config_pbtxt("g")
    assert "kind: KIND_GPU count: 4" in gpu and "preferred_batch_size: [ 64 ]" in gpu


@pytest.mark.parametrize(
    "options",
    [
        {"count": 0},
        {"kind": "KIND_TPU"},
        {"preferred_batch_sizes": (128,)},
        {"max_queue_delay_us": -1},
    ],
)
def test_a_serving_that_cannot_work_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(ServingConfigError):
        TritonServing(**options)  # type: ignore[arg-type]


def test_a_model_holds_its_archive_and_the_digest_its_store_recorded(tmp_path: Path) -> None:
    store = _store(tmp_path, "geoverdict.mar")
    folder = add_model(tmp_path / "repo", "geoverdict", store / "geoverdict.mar")
    assert folder == tmp_path / "repo" / "geoverdict" / "1"
    assert (folder / ARCHIVE).resolve() == (store / "geoverdict.mar").resolve()
    assert (folder / "model.py").read_text() == BOOTSTRAP
    assert archives.problems(folder, [ARCHIVE]) == []
    # The archive changed after the store recorded it: the model's own check refuses it.
    (store / "geoverdict.mar").write_bytes(b"swapped")
    assert "SHA-256 differs" in archives.problems(folder, [ARCHIVE])[0]


def test_an_archive_the_store_does_not_list_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store / "stray.mar").write_bytes(b"?")
    with pytest.raises(ServingConfigError, match="not an archive listed"):
        add_model(tmp_path / "repo", "stray", store / "stray.mar")


def test_all_serves_every_archive_of_the_store_under_its_stem(tmp_path: Path) -> None:
    store = _store(tmp_path, "a.mar", "b.mar")
    written = write_repository(tmp_path / "repo", store, ["all"], link=False)
    assert sorted(written) == ["a", "b"]
    assert not (written["a"] / ARCHIVE).is_symlink()
    named = write_repository(tmp_path / "named", store, ["geo=b.mar"])
    assert list(named) == ["geo"]


def test_the_entry_points_packages_win_over_what_the_stubs_interpreter_found(
    tmp_path: Path,
) -> None:
    # Triton's stub ignores PYTHONPATH (as `python -E` does) and takes its prefix from PATH's
    # python3: an activated virtual environment's, whose numpy 2 misreads BYTES tensors. What
    # PYTHONPATH names (the pinned numpy 1.26) must come first.
    pinned = tmp_path / "pinned"
    (pinned / "numpy").mkdir(parents=True)
    (pinned / "numpy" / "__init__.py").write_text("PINNED = True\n")
    header = BOOTSTRAP.rsplit("from geoverdict_training", 1)[0]
    probe = header + "import numpy\nprint(getattr(numpy, 'PINNED', False))\n"
    found = subprocess.run(
        [sys.executable, "-E", "-c", probe],
        env={**os.environ, "PYTHONPATH": str(pinned)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "True", found.stderr
