"""The public GeoEstimation cells file: the format the MP-16 partitions were published in.

    num_images: 4723695
    min_concept_probability: ---
    class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean
    0,8744,3376,39.28162046949048,-107.94343695171831

`hex_id` is the S2 token. Written with the csv module's CRLF line ends, as the public files are.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from geoverdict_training.exceptions import ConfigError, DataFileError
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import Partition, PartitionSpec

HEADER = ("class_label", "hex_id", "imgs_per_cell", "latitude_mean", "longitude_mean")
_NUM_IMAGES = "num_images:"
_CONCEPT = "min_concept_probability: ---"


def cells_file_name(spec: PartitionSpec) -> str:
    """`cells_TAUMIN_TAUMAX.csv`."""
    return f"{spec.name}.csv"


def write_cells_csv(partition: Partition, path: Path) -> None:
    """Write a partition in the public cells format, classes in index order."""
    rows = [
        [k, token, int(count), repr(float(lat)), repr(float(lon))]
        for k, (token, count, lat, lon) in enumerate(
            zip(
                partition.tokens,
                partition.counts,
                partition.lat_mean,
                partition.lon_mean,
                strict=True,
            )
        )
    ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([f"{_NUM_IMAGES} {partition.num_images}"])
            writer.writerow([_CONCEPT])
            writer.writerow(HEADER)
            writer.writerows(rows)
    except OSError as exc:
        raise DataFileError(f"cannot write cells file {path}: {exc.strerror or exc}") from exc


def read_cells_csv(path: Path) -> Partition:
    """Read a cells file (ours or a public one); the partition is named after the file's stem."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except OSError as exc:
        raise DataFileError(f"cannot read cells file {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"cells file {path} is not CSV text: {exc}") from exc
    try:
        return _parse(path, lines)
    except ConfigError as exc:
        raise DataFileError(f"cells file {path}: {exc}") from exc


def _parse(path: Path, lines: list[list[str]]) -> Partition:
    header_at = next((k for k, row in enumerate(lines) if tuple(row) == HEADER), None)
    if header_at is None:
        raise DataFileError(f"cells file {path} has no header line {','.join(HEADER)}")
    num_images = None
    for row in lines[:header_at]:
        text = ",".join(row).strip()
        if text.startswith(_NUM_IMAGES):
            try:
                num_images = int(text[len(_NUM_IMAGES) :].strip())
            except ValueError as exc:
                raise DataFileError(f"cells file {path}: bad preamble line {text!r}") from exc
    rows = [row for row in lines[header_at + 1 :] if row]
    if any(len(row) != len(HEADER) for row in rows):
        raise DataFileError(f"cells file {path}: every row needs {len(HEADER)} fields")
    try:
        labels = np.array([int(row[0]) for row in rows], dtype=np.int64)
        counts = np.array([int(row[2]) for row in rows], dtype=np.int64)
        lat = np.array([float(row[3]) for row in rows], dtype=np.float64)
        lon = np.array([float(row[4]) for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise DataFileError(f"cells file {path}: {exc}") from exc
    if not np.array_equal(np.sort(labels), np.arange(len(rows))):
        raise DataFileError(f"cells file {path}: class labels are not 0..{len(rows) - 1}")
    order = np.argsort(labels)
    try:
        ids = s2.from_tokens([rows[k][1] for k in order])
    except DataFileError as exc:
        raise DataFileError(f"cells file {path}: {exc}") from exc
    return Partition(
        name=path.stem,
        cell_ids=ids,
        counts=counts[order],
        lat_mean=lat[order],
        lon_mean=lon[order],
        num_images=int(counts.sum()) if num_images is None else num_images,
    )
