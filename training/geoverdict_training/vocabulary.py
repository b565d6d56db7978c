"""The words every layer shares: scene sets and their heads, the no-label sentinel, the default
partitions.

Scene sets are Places365's three levels, as the scene heads number them. S3 and S16 are the
first two levels of the Places365 scene hierarchy (indoor / outdoor natural / outdoor man-made,
then 16 groups: 0-5 indoor, 6-9 natural, 10-15 urban); S365 are the 365 Places365 classes in the
order of the release's categories file, shipped beside this module. The GeoEstimation labels of
the reference data use these indices, in the manifest columns `S3_Label,S16_Label,S365_Label`.
"""

from __future__ import annotations

import importlib.resources
from functools import cache

from geoverdict_training.exceptions import DataFileError

# Scene set -> number of classes, in the manifest's column order.
SCENE_CLASSES: dict[str, int] = {"s3": 3, "s16": 16, "s365": 365}
SCENE_SETS: tuple[str, ...] = tuple(SCENE_CLASSES)
# The model calls the head of scene set `s` SCENE_PREFIX + s (a partition's head: its name).
SCENE_PREFIX = "scene_"
SCENE_HEADS: tuple[str, ...] = tuple(SCENE_PREFIX + s for s in SCENE_SETS)
# The manifest's scene label columns (the public Im2GPS / MP-16 meta files' names).
SCENE_COLUMNS: tuple[str, ...] = tuple(f"{s.upper()}_Label" for s in SCENE_SETS)
# A photo without a class in a partition, or without a scene label: masked out of the loss.
NO_LABEL = -1
# (tau_min, tau_max) of the coarse / middle / fine partitions of the seed paper.
DEFAULT_PARTITIONS: tuple[str, ...] = ("50:5000", "50:2000", "50:1000")

S3_NAMES = ("indoor", "natural", "urban")
S16_NAMES = (
    "shopping and dining",
    "workplace",
    "home or hotel",
    "transportation (indoor)",
    "sports and leisure",
    "cultural (art, education, religion, law, politics)",
    "water, ice, snow",
    "mountains, hills, desert, sky",
    "forest, field, jungle",
    "man-made elements",
    "transportation (roads, parking, bridges, boats, airports)",
    "cultural or historical building or place",
    "sports fields, parks, leisure spaces",
    "industrial and construction",
    "houses, cabins, gardens, and farms",
    "commercial buildings, shops, markets, cities, and towns",
)
PLACES365_FILE = "places365_categories.txt"


def scene_head(scene: str) -> str:
    """The model's head name of a scene set: `s3` -> `scene_s3`."""
    return SCENE_PREFIX + scene


@cache
def s365_names() -> tuple[str, ...]:
    """The 365 Places365 class names, e.g. `airfield`, `apartment_building/outdoor`."""
    resource = importlib.resources.files("geoverdict_training") / PLACES365_FILE
    try:
        lines = resource.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataFileError(f"cannot read {resource}: {exc.strerror or exc}") from exc
    names = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    if len(names) != SCENE_CLASSES["s365"]:
        raise DataFileError(f"{resource} names {len(names)} classes, not 365")
    return names


def scene_names() -> dict[str, tuple[str, ...]]:
    """Scene set (s3, s16, s365) -> class names by index."""
    return {"s3": S3_NAMES, "s16": S16_NAMES, "s365": s365_names()}
