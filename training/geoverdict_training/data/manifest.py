"""The photo manifest: a CSV in the format of the public Im2GPS / Im2GPS3k / MP-16 meta files.

Columns `IMG_ID,LAT,LON` are required (names matched case-insensitively); `AUTHOR`, the scene
labels `S3_Label,S16_Label,S365_Label` and the S3 probabilities `Prob_indoor,Prob_natural,
Prob_urban` are optional, and other columns are ignored. `IMG_ID` is
the image's path relative to the image folder. Rows with a missing id, a repeated id,
coordinates that are not numbers within range, or scene labels that are not class numbers are
skipped and counted (see `skips.Skips`), never fatal.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from geoverdict_training.data.skips import Skips
from geoverdict_training.exceptions import DataFileError
from geoverdict_training.vocabulary import SCENE_CLASSES, SCENE_COLUMNS

ID_COLUMN, LAT_COLUMN, LON_COLUMN, AUTHOR_COLUMN = "IMG_ID", "LAT", "LON", "AUTHOR"
# The S3 probabilities the public meta files carry beside the labels (the helper network's).
S3_PROBABILITY_COLUMNS = ("Prob_indoor", "Prob_natural", "Prob_urban")


@dataclass(frozen=True, eq=False)
class Manifest:
    """Photos with coordinates and optional scene labels and authors; row k is one photo."""

    image_ids: list[str]  # (N,) paths relative to the image folder
    lat: npt.NDArray[np.float64]  # (N,) degrees
    lon: npt.NDArray[np.float64]  # (N,) degrees
    scenes: npt.NDArray[np.int64]  # (N, 3) S3, S16, S365 labels; -1 where absent
    authors: list[str] | None = None  # (N,) where the file has an AUTHOR column
    skips: Skips = field(default_factory=lambda: Skips("manifest"))
    # (N, 3) indoor / natural / urban probabilities, NaN where absent; None without the columns
    s3_probabilities: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, rows: npt.NDArray[np.int64]) -> Manifest:
        """The manifest of the given rows, sharing this one's skip tally."""
        picked = [int(k) for k in rows]
        return Manifest(
            image_ids=[self.image_ids[k] for k in picked],
            lat=self.lat[rows],
            lon=self.lon[rows],
            scenes=self.scenes[rows],
            authors=None if self.authors is None else [self.authors[k] for k in picked],
            skips=self.skips,
            s3_probabilities=None if self.s3_probabilities is None else self.s3_probabilities[rows],
        )

    def with_existing_files(self, image_dir: Path) -> Manifest:
        """Only the rows whose image file exists under `image_dir`; the others count as skipped."""
        exists = np.array([(image_dir / name).is_file() for name in self.image_ids], dtype=bool)
        self.skips.skip("missing file", int((~exists).sum()))
        return self.subset(np.flatnonzero(exists))


def valid_coordinates(lat: float, lon: float) -> bool:
    """Finite, latitude within [-90, 90] and longitude within [-180, 180]."""
    return math.isfinite(lat) and math.isfinite(lon) and abs(lat) <= 90 and abs(lon) <= 180


def _parse_scene(text: str, classes: int) -> int | None:
    """The label, -1 for an empty field, None for a malformed or out-of-range one."""
    text = text.strip()
    if not text:
        return -1
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and 0 <= value < classes else None


def _parse_probability(text: str) -> float:
    """A probability in [0, 1], NaN for an empty or malformed field (never fatal: a hint only)."""
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if 0.0 <= value <= 1.0 else math.nan


def read_manifest(path: Path) -> Manifest:
    """Read a manifest CSV; raises DataFileError if the file or a required column is missing."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataFileError(f"manifest {path} is empty")
            return _parse_rows(path, header, reader)
    except OSError as exc:
        raise DataFileError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"manifest {path} is not CSV text: {exc}") from exc


def _parse_rows(path: Path, header: list[str], rows: Iterable[list[str]]) -> Manifest:
    columns = {name.strip().upper(): k for k, name in enumerate(header)}
    missing = [c for c in (ID_COLUMN, LAT_COLUMN, LON_COLUMN) if c not in columns]
    if missing:
        raise DataFileError(f"manifest {path} lacks column(s) {', '.join(missing)}")
    i_id, i_lat, i_lon = columns[ID_COLUMN], columns[LAT_COLUMN], columns[LON_COLUMN]
    i_author = columns.get(AUTHOR_COLUMN)
    i_scenes = [columns.get(name.upper()) for name in SCENE_COLUMNS]
    i_probs = [columns.get(name.upper()) for name in S3_PROBABILITY_COLUMNS]
    has_probs = all(index is not None for index in i_probs)
    skips = Skips(f"manifest {path.name}")
    ids: list[str] = []
    authors: list[str] = []
    coords: list[tuple[float, float]] = []
    scenes: list[tuple[int, ...]] = []
    probs: list[tuple[float, ...]] = []
    seen_ids: set[str] = set()
    for row in rows:
        if not row:
            continue  # blank line
        skips.seen += 1
        fields = row + [""] * (len(header) - len(row))
        image_id = fields[i_id].strip()
        if not image_id:
            skips.skip("missing IMG_ID")
            continue
        try:
            lat, lon = float(fields[i_lat]), float(fields[i_lon])
        except ValueError:
            skips.skip("bad coordinates")
            continue
        if not valid_coordinates(lat, lon):
            skips.skip("bad coordinates")
            continue
        labels = [
            -1 if index is None else _parse_scene(fields[index], classes)
            for index, classes in zip(i_scenes, SCENE_CLASSES.values(), strict=True)
        ]
        if any(label is None for label in labels):
            skips.skip("bad scene label")
            continue
        if image_id in seen_ids:
            skips.skip("duplicate IMG_ID")
            continue
        seen_ids.add(image_id)
        ids.append(image_id)
        coords.append((lat, lon))
        scenes.append(tuple(label for label in labels if label is not None))
        if i_author is not None:
            authors.append(fields[i_author].strip())
        if has_probs:
            probs.append(tuple(_parse_probability(fields[k]) for k in i_probs if k is not None))
    coord_array = np.array(coords, dtype=np.float64).reshape(-1, 2)  # (N, 2)
    return Manifest(
        image_ids=ids,
        lat=coord_array[:, 0].copy(),
        lon=coord_array[:, 1].copy(),
        scenes=np.array(scenes, dtype=np.int64).reshape(-1, len(SCENE_COLUMNS)),
        authors=authors if i_author is not None else None,
        skips=skips,
        s3_probabilities=np.array(probs, dtype=np.float64).reshape(-1, 3) if has_probs else None,
    )


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write a manifest CSV; scene (probability) columns only where some photo has one."""
    has_scenes = bool((manifest.scenes >= 0).any())
    probs = manifest.s3_probabilities
    has_probs = probs is not None and bool(np.isfinite(probs).any())
    header = [ID_COLUMN]
    if manifest.authors is not None:
        header.append(AUTHOR_COLUMN)
    header += [LAT_COLUMN, LON_COLUMN]
    if has_scenes:
        header += list(SCENE_COLUMNS)
    if has_probs:
        header += list(S3_PROBABILITY_COLUMNS)
    rows: list[list[str]] = []
    for k, image_id in enumerate(manifest.image_ids):
        row = [image_id]
        if manifest.authors is not None:
            row.append(manifest.authors[k])
        row += [repr(float(manifest.lat[k])), repr(float(manifest.lon[k]))]
        if has_scenes:
            row += [str(int(s)) if s >= 0 else "" for s in manifest.scenes[k]]
        if has_probs and probs is not None:
            row += [repr(float(p)) if math.isfinite(p) else "" for p in probs[k]]
        rows.append(row)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as exc:
        raise DataFileError(f"cannot write manifest {path}: {exc.strerror or exc}") from exc
