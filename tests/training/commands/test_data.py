"""`geoverdict partition | evaluate | data` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geoverdict.cli import main
from geoverdict_training.data.manifest import Manifest, read_manifest, write_manifest
from geoverdict_training.data.shards import list_shards, read_records
from geoverdict_training.geo.partition_files import read_cells_csv
from geoverdict_training.geo.partitions import PartitionSpec, build_partitions
from tests.training.imagefiles import write_photos


def _manifest_file(tmp_path: Path, n: int = 600) -> tuple[Path, Manifest]:
    rng = np.random.default_rng(0)
    manifest = Manifest(
        [f"p{k}.jpg" for k in range(n)],
        np.clip(rng.normal(45, 2, n), -90, 90),
        rng.normal(9, 2, n),
        np.full((n, 3), -1, np.int64),
    )
    path = tmp_path / "meta.csv"
    write_manifest(manifest, path)
    with path.open("a") as handle:
        handle.write("bad.jpg,north,9\n")
    return path, manifest


def test_partition_writes_one_cells_file_per_partition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, manifest = _manifest_file(tmp_path)
    argv = ["partition", "--manifest", str(path), "--out", str(tmp_path / "cells")]
    assert main([*argv, "--partition", "3:40", "--partition", "1:10"]) == 0
    out = capsys.readouterr().out
    assert "601 rows, 600 kept, 1 skipped (1 bad coordinates)" in out
    specs = [PartitionSpec(3, 40), PartitionSpec(1, 10)]
    expected = build_partitions(manifest.lat, manifest.lon, specs)
    for spec, partition in zip(specs, expected, strict=True):
        written = read_cells_csv(tmp_path / "cells" / f"cells_{spec.tau_min}_{spec.tau_max}.csv")
        assert written.tokens == partition.tokens
        assert written.counts.tolist() == partition.counts.tolist()
        assert f"{len(partition)} classes" in out


def test_partition_defaults_to_the_seed_papers_three(tmp_path: Path) -> None:
    path, _ = _manifest_file(tmp_path, n=100)
    assert main(["partition", "--manifest", str(path), "--out", str(tmp_path / "c")]) == 0
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == ["cells_50_1000.csv", "cells_50_2000.csv", "cells_50_5000.csv"]


def test_a_bad_partition_argument_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["partition", "--manifest", "m.csv", "--out", "o", "--partition", "100:50"])
    assert caught.value.code == 2
    assert "tau_max must be > tau_min" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["partition", "--manifest", "{tmp}/missing.csv", "--out", "{tmp}/o"],
        ["evaluate", "--predictions", "{tmp}/missing.csv"],
        ["data", "from-exif", "{tmp}/missing"],
        ["data", "to-shards", "--manifest", "{tmp}/m.csv", "--images", "{tmp}", "--out", "{tmp}/s"],
    ],
)
def test_user_errors_print_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_evaluate_prints_a_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "img_id,gt_lat,predicted_lat,gt_long,predicted_long\na,0,0,0,0\nb,0,0,0,90\n\nsummary\n"
    )
    assert main(["evaluate", "--predictions", str(path)]) == 0
    assert "continent  2500 km   50.0 %" in capsys.readouterr().out
    assert main(["evaluate", "--predictions", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2
    assert result["accuracy"] == {"1": 50.0, "25": 50.0, "200": 50.0, "750": 50.0, "2500": 50.0}
    assert set(result) == {"n", "accuracy", "median_km", "mean_km"}


def test_evaluate_reproduces_the_published_isns_row(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shared_data / "geoestimation" / "results" / "im2gps3k" / "ISNs_M-fstar-S3.csv"
    assert main(["evaluate", "--predictions", str(path)]) == 0
    out = capsys.readouterr().out
    for value in ("10.5 %", "28.0 %", "36.6 %", "49.7 %", "66.0 %"):
        assert value in out
    assert main(["evaluate", "--predictions", str(path), "--json"]) == 0
    accuracy = json.loads(capsys.readouterr().out)["accuracy"]
    assert [round(accuracy[t], 1) for t in ("1", "25", "200", "750", "2500")] == [
        10.5,
        28.0,
        36.6,
        49.7,
        66.0,
    ]


def test_data_to_shards_and_from_exif(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_photos(tmp_path / "images", ["a.jpg", "b.jpg"])
    manifest = Manifest(
        ["a.jpg", "b.jpg", "c.jpg"], np.zeros(3), np.zeros(3), -np.ones((3, 3), np.int64)
    )
    write_manifest(manifest, tmp_path / "m.csv")
    argv = ["data", "to-shards", "--manifest", str(tmp_path / "m.csv"), "--images"]
    assert main([*argv, str(tmp_path / "images"), "--out", str(tmp_path / "shards")]) == 0
    assert "3 rows, 2 kept, 1 skipped (1 missing file)" in capsys.readouterr().out
    ids = [r.image_id for s in list_shards(tmp_path / "shards") for r in read_records(s) if r]
    assert ids == ["a.jpg", "b.jpg"]

    assert main(["data", "from-exif", str(tmp_path / "images")]) == 0
    assert "2 rows, 0 kept, 2 skipped (2 no GPS EXIF)" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "images" / "manifest.csv")) == 0


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from geoverdict.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
