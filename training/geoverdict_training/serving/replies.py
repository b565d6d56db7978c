"""The handler's reply per image: the prediction contract (prediction.schema.json of the service).

A prediction lists the fine cells by probability until 99 % of the mass (at most `max_cells`),
the best guess, scene labels, a confidence summary and facts about the image; an error reply
carries a stable code and a message. Both carry the model version. The handler, evaluation's
per-photo replies, tests and tools build replies the same way.

The best guess is a point chosen from the whole distribution (inference/best_guess.py: by
default the point of least expected distance to the truth), inside one of the model's cells:
the reply names that cell (token, level, probability) and its `radius_km` from the point.

Distances count each cell's extent, since a cell's point is only where its training photos
were on average. A cell's `radius_km` is the greatest distance from its point to its corners.
`radius_50_km` / `radius_90_km` are the smallest distances r from the best guess such that the
cells lying entirely within r (each cell's farthest corner within r) hold 50 % / 90 % of the
probability: a level-2 cell holding all the mass answers its thousands of km, never 0.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from geoverdict_common.exif import gps_from_exif
from geoverdict_training.geo.partitions import Partition
from geoverdict_training.images.decode import ERROR_CODES, UNREADABLE, ImageHeader, read_header
from geoverdict_training.inference.best_guess import Guess, GuessRule, best_guess

# The contract's error codes: the image decoder's (`unsupported` is also a request that is not
# image bytes, e.g. a JSON body), plus the handler's own.
INTERNAL = "internal"  # a bug or resource failure while answering this image
REPLY_ERROR_CODES = (*(c for c in ERROR_CODES if c != UNREADABLE), INTERNAL)
_EPS = 1e-9  # 0.4 + 0.2 + 0.3 sums to 0.8999999999999999: a mass reached up to rounding counts


@dataclass(frozen=True)
class ImageFacts:
    """What the handler learned about one image while decoding it."""

    width: int  # as displayed (EXIF orientation applied)
    height: int
    format: str | None  # Pillow's name: JPEG, PNG, ...
    exif_location: tuple[float, float] | None  # (lat, lon) from GPS EXIF
    decode_ms: float


def image_facts(source: bytes | ImageHeader, decode_ms: float) -> ImageFacts:
    """Size as displayed, format and GPS position, from the header of an image (already
    decoded once, so known to open)."""
    header = source if isinstance(source, ImageHeader) else read_header(source)
    width, height = header.displayed_size
    return ImageFacts(width, height, header.format, gps_from_exif(header.exif), decode_ms)


@dataclass(frozen=True)
class ReplySettings:
    """How much of the distribution goes into a reply."""

    cell_mass: float = 0.99  # list cells until this share of the probability
    max_cells: int = 100
    scene_top_k: int = 5  # entries of the s16 and s365 lists
    best_guess: GuessRule = field(default_factory=GuessRule)  # how the best guess is chosen


def error_reply(model_version: str, code: str, message: str) -> dict[str, Any]:
    """The reply for an image that could not be answered; `code` must be a contract code."""
    if code not in REPLY_ERROR_CODES:
        code = {UNREADABLE: "undecodable"}.get(code, INTERNAL)
    return {"model_version": model_version, "error": {"code": code, "message": message}}


@functools.lru_cache(maxsize=8)
def _cell_fields(fine: Partition) -> list[tuple[str, int, float, float, float]]:
    """(token, level, lat, lon, radius_km) of every class as Python values, made once per
    partition: a reply lists up to 100 cells, and numpy scalars cost per conversion."""
    return list(
        zip(
            fine.tokens,
            fine.levels.tolist(),
            fine.lat_mean.tolist(),
            fine.lon_mean.tolist(),
            fine.radius_km.tolist(),
            strict=True,
        )
    )


def _cell(fine: Partition, k: int, probability: float) -> dict[str, Any]:
    token, level, lat, lon, radius = _cell_fields(fine)[k]
    return {
        "token": token,
        "level": level,
        "lat": lat,
        "lon": lon,
        "probability": float(probability),
        "radius_km": radius,
    }


def _mass_radius(
    distances: npt.NDArray[np.float64], p: npt.NDArray[np.float64], mass: float
) -> float:
    """Smallest distance from the best guess within which the cells hold `mass` of `p`, where
    `distances` (C,) are how far each cell reaches from the best guess."""
    order = np.argsort(distances, kind="stable")
    cumulative = np.cumsum(p[order])
    k = min(int(np.searchsorted(cumulative, mass * cumulative[-1] - _EPS)), order.size - 1)
    return float(distances[order[k]])


def confidence(p: npt.NDArray[np.float64], reach: npt.NDArray[np.float64]) -> dict[str, float]:
    """Top-1 probability, entropy (nats) and the 50 % / 90 % mass radii around the best guess,
    given how far each cell reaches from it (`reach`, (C,) km)."""
    best = int(np.argmax(p))
    positive = p[p > 0]
    return {
        "top1": float(p[best]),
        "entropy": float(-(positive * np.log(positive)).sum()),
        "radius_50_km": _mass_radius(reach, p, 0.5),
        "radius_90_km": _mass_radius(reach, p, 0.9),
    }


def guess_cell(
    fine: Partition, p: npt.NDArray[np.float64], guess: Guess, reach: npt.NDArray[np.float64]
) -> dict[str, Any]:
    """The reply's `best_guess`: the point, the token, level and probability of the cell it lies
    in, and `radius_km`, how far that cell reaches from the point (`reach` of that cell)."""
    radius = float(reach[guess.cell])
    return {
        **_cell(fine, guess.cell, p[guess.cell]),
        "lat": guess.lat,
        "lon": guess.lon,
        "radius_km": radius,
    }


def _scored(names: Sequence[str], p: npt.NDArray[np.float32], k: int) -> list[dict[str, Any]]:
    top = np.argsort(-p, kind="stable")[:k]
    return [{"label": names[i], "index": int(i), "probability": float(p[i])} for i in top]


def prediction_reply(
    model_version: str,
    fine: Partition,
    cells: npt.NDArray[np.float64],
    scenes: Mapping[str, npt.NDArray[np.float32]],
    scene_names: Mapping[str, Sequence[str]],
    facts: ImageFacts,
    inference_ms: float,
    settings: ReplySettings | None = None,
) -> dict[str, Any]:
    """The reply for one image: `cells` is its (n_fine,) hierarchical distribution, `scenes` its
    (n,) softmax per scene set."""
    settings = settings or ReplySettings()
    p = np.asarray(cells, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    cumulative = np.cumsum(p[order])
    count = int(np.searchsorted(cumulative, settings.cell_mass - _EPS)) + 1
    count = min(count, settings.max_cells, p.size)
    listed = [_cell(fine, int(k), p[k]) for k in order[:count]]
    scene: dict[str, Any] = {}
    if "s3" in scenes:
        scene["s3"] = _scored(scene_names["s3"], scenes["s3"], 1)[0]
    for name in ("s16", "s365"):
        if name in scenes:
            scene[name] = _scored(scene_names[name], scenes[name], settings.scene_top_k)
    location = facts.exif_location
    guess = best_guess(fine, p, settings.best_guess)
    reach = fine.far_km(guess.lat, guess.lon)  # (C,) how far each cell reaches from the guess
    return {
        "model_version": model_version,
        "cells": listed,
        "cells_mass": float(min(cumulative[count - 1], 1.0)),
        "best_guess": guess_cell(fine, p, guess, reach),
        "scene": scene,
        "confidence": confidence(p, reach),
        "image": {"width": facts.width, "height": facts.height, "format": facts.format},
        "exif_location": None if location is None else {"lat": location[0], "lon": location[1]},
        "timings_ms": {"decode": facts.decode_ms, "inference": inference_ms},
    }
