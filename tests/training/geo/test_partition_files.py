"""The public GeoEstimation cells format: written as published, and the public files read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoverdict_training.exceptions import DataFileError
from geoverdict_training.geo.partition_files import cells_file_name, read_cells_csv, write_cells_csv
from geoverdict_training.geo.partitions import Partition, PartitionSpec, build_partitions

PREAMBLE = "num_images: 4\r\nmin_concept_probability: ---\r\n"
HEADER = "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\r\n"


def _partition(n: int = 400, seed: int = 0) -> Partition:
    rng = np.random.default_rng(seed)
    lat = np.clip(rng.normal(45, 3, n), -90, 90)
    lon = rng.normal(7, 3, n)
    (partition,) = build_partitions(lat, lon, [PartitionSpec(3, 40)])
    return partition


def test_written_file_reads_back_the_same(tmp_path: Path) -> None:
    partition = _partition()
    path = tmp_path / "out" / cells_file_name(PartitionSpec(3, 40))
    write_cells_csv(partition, path)
    back = read_cells_csv(path)
    assert path.name == "cells_3_40.csv"
    assert back.name == "cells_3_40"
    assert back.num_images == 400
    assert back.cell_ids.tolist() == partition.cell_ids.tolist()
    assert back.counts.tolist() == partition.counts.tolist()
    assert back.lat_mean.tolist() == partition.lat_mean.tolist()  # repr round-trips floats
    assert back.lon_mean.tolist() == partition.lon_mean.tolist()


def test_written_file_has_the_public_layout(tmp_path: Path) -> None:
    partition = _partition()
    path = tmp_path / "cells.csv"
    write_cells_csv(partition, path)
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[0] == "num_images: 400"
    assert lines[1] == "min_concept_probability: ---"
    assert lines[2] == "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean"
    first = lines[3].split(",")
    assert first[:3] == ["0", partition.tokens[0], str(partition.counts[0])]
    assert len(lines) == 3 + len(partition) + 1  # and a final line end


def test_rows_in_any_class_order_are_read_in_index_order(tmp_path: Path) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(PREAMBLE + HEADER + "1,8744,2,1.0,2.0\n0,1343,2,3.0,4.0\n")
    partition = read_cells_csv(path)
    assert partition.tokens == ["1343", "8744"]
    assert partition.lat_mean.tolist() == [3.0, 1.0]
    assert partition.num_images == 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "no header"),
        (HEADER + "0,8744,2,1.0\n", "fields"),
        (HEADER + "0,8744,two,1.0,2.0\n", "two"),
        (HEADER + "0,nothex,2,1.0,2.0\n", "S2 token"),
        (HEADER + "0,8744,2,1.0,2.0\n2,1343,2,1.0,2.0\n", "class labels"),
        (HEADER + "0,8744,2,1.0,2.0\n1,87444,2,1.0,2.0\n", "overlap"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(PREAMBLE + body)
    with pytest.raises(DataFileError, match=message):
        read_cells_csv(path)


def test_a_missing_file_is_a_data_file_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="cannot read"):
        read_cells_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("name", "classes", "first_token"),
    [
        ("cells_50_5000", 3298, "8744"),
        ("cells_50_2000", 7202, None),
        ("cells_50_1000", 12893, "8747c"),
    ],
)
def test_public_mp16_partitions_are_read(
    shared_data: Path, name: str, classes: int, first_token: str | None
) -> None:
    partition = read_cells_csv(shared_data / "geoestimation" / f"{name}.csv")
    assert len(partition) == classes
    assert partition.num_images == 4_723_695
    assert partition.counts.min() == 51  # count <= tau_min = 50 was dropped
    if first_token is not None:
        assert partition.tokens[0] == first_token
