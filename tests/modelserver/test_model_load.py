"""Which archives a server loads: TorchServe's `load_models` form, names given or from stems."""

from __future__ import annotations

from pathlib import Path

from geoverdict_modelserver.model_load import archives_to_load, model_archives


def test_the_load_models_value_names_the_archives(tmp_path: Path) -> None:
    for name in ("a.mar", "b.mar"):
        (tmp_path / name).write_bytes(b"x")
    assert archives_to_load(tmp_path, "all") == ["a.mar", "b.mar"]
    assert archives_to_load(tmp_path, "geoverdict=a.mar, other=b.mar") == ["a.mar", "b.mar"]
    assert archives_to_load(tmp_path, "") == []


def test_a_bare_archive_is_named_after_its_stem() -> None:
    models = model_archives(["geoverdict=demo.mar", "other.mar"])
    assert models == {"geoverdict": "demo.mar", "other": "other.mar"}
