"""Names of the scene classes: Places365's three levels, as the scene heads number them.

S3 and S16 are the first two levels of the Places365 scene hierarchy (indoor / outdoor natural /
outdoor man-made, then 16 groups: 0-5 indoor, 6-9 natural, 10-15 urban); S365 are the 365
Places365 classes in the order of the release's categories file, shipped beside this module.
The GeoEstimation labels of the reference data use these indices.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from geoverdict_training.exceptions import DataFileError

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
PLACES365_FILE = Path(__file__).with_name("places365_categories.txt")


@cache
def s365_names() -> tuple[str, ...]:
    """The 365 Places365 class names, e.g. `airfield`, `apartment_building/outdoor`."""
    try:
        lines = PLACES365_FILE.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataFileError(f"cannot read {PLACES365_FILE}: {exc.strerror or exc}") from exc
    names = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    if len(names) != 365:
        raise DataFileError(f"{PLACES365_FILE} names {len(names)} classes, not 365")
    return names


def scene_names() -> dict[str, tuple[str, ...]]:
    """Scene set (s3, s16, s365) -> class names by index."""
    return {"s3": S3_NAMES, "s16": S16_NAMES, "s365": s365_names()}
