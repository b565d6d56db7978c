"""Whether a repost may reuse its original's prediction: the demo model's answer for each altered
copy (near_duplicates.ALTERATIONS) against its answer for the original, over the copies the
fingerprint finds. Reuse is sound where the two answers differ far less than the model errs: the
report sets the distance between the two best guesses beside the original's own error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.exceptions import BenchError
from benchmarks.near_duplicates import ALTERATIONS, NearDuplicateOptions, best_distance, dev_photos
from geoverdict_common.distances import haversine_km
from geoverdict_common.paths import runs_dir
from geoverdict_service.provenance import fingerprints

log = logging.getLogger(__name__)

PHOTOS = 100
BATCH = 16


@dataclass(frozen=True)
class RepostOptions:
    """What `python -m benchmarks repost-predictions` measures, and where it writes."""

    model: Path | None = None  # default: model_store/geoverdict.mar
    images: Path | None = None  # default: the shared im2gps3k-dev images
    photos: int = PHOTOS
    seed: int = 0
    out: Path | None = None  # default: bench/ (fewer photos than PHOTOS: .run/repost-predictions/)

    def output_dir(self) -> Path:
        """bench/, or .run/repost-predictions/ for a smaller smoke run."""
        if self.out is not None:
            return self.out
        return runs_dir() / "repost-predictions" if self.photos < PHOTOS else Path("bench")


def _answers(responder: Any, bodies: Sequence[bytes]) -> list[dict[str, Any]]:
    replies: list[dict[str, Any]] = []
    for start in range(0, len(bodies), BATCH):
        replies += responder.answer(list(bodies[start : start + BATCH]))
    bad = [r for r in replies if "best_guess" not in r]
    if bad:
        raise BenchError(f"the model refused {len(bad)} images: {bad[0]}")
    return replies


def _truth(images: Path) -> dict[str, tuple[float, float]]:
    manifest = images.parent / "dev.csv"
    truth = {}
    if manifest.is_file():
        for line in manifest.read_text().splitlines()[1:]:
            fields = line.split(",")
            truth[fields[0]] = (float(fields[2]), float(fields[3]))
    return truth


def _error_km(reply: Mapping[str, Any], truth: tuple[float, float] | None) -> float:
    """The best guess's distance from the photo's true place (NaN where it is unknown)."""
    if truth is None:
        return float("nan")
    guess = reply["best_guess"]
    return float(haversine_km(guess["lat"], guess["lon"], *truth))


def _median(km: np.ndarray) -> float | None:
    known = km[~np.isnan(km)]
    return round(float(np.median(known)), 0) if known.size else None


def _within(km: np.ndarray, limit: float) -> float | None:
    known = km[~np.isnan(km)]
    return round(100 * float((known <= limit).mean()), 1) if known.size else None


def run(options: RepostOptions = RepostOptions()) -> dict[str, Any]:
    """Answer each original and its altered copies; compare the answers; write the results."""
    from geoverdict.locate import LocateError, load_responder  # noqa: PLC0415 (torch)

    paths = dev_photos(NearDuplicateOptions(images=options.images, limit=options.photos))
    try:
        responder = load_responder(options.model, "cpu")
    except LocateError as exc:
        raise BenchError(str(exc)) from exc
    originals = [path.read_bytes() for path in paths]
    answers = _answers(responder, originals)
    prints = [fingerprints.fingerprint(body) for body in originals]
    truth = _truth(paths[0].parent)
    errors = np.array(
        [_error_km(a, truth.get(p.name)) for p, a in zip(paths, answers, strict=True)]
    )
    rows = []
    for name, (alter, _) in ALTERATIONS.items():
        copies = []
        for index, path in enumerate(paths):
            with Image.open(path) as opened:
                copies.append(
                    alter(opened.convert("RGB"), np.random.default_rng([options.seed, index]))
                )
        found = [
            k
            for k, body in enumerate(copies)
            if best_distance(fingerprints.fingerprint(body), prints[k])
            <= fingerprints.MATCH_DISTANCE
        ]
        replies = _answers(responder, [copies[k] for k in found])
        apart = np.array(
            [
                float(
                    haversine_km(
                        r["best_guess"]["lat"],
                        r["best_guess"]["lon"],
                        answers[k]["best_guess"]["lat"],
                        answers[k]["best_guess"]["lon"],
                    )
                )
                for k, r in zip(found, replies, strict=True)
            ]
        )
        own = np.array(
            [_error_km(r, truth.get(paths[k].name)) for k, r in zip(found, replies, strict=True)]
        )
        reused = errors[found]
        same = [
            r["best_guess"]["token"] == answers[k]["best_guess"]["token"]
            for k, r in zip(found, replies, strict=True)
        ]
        rows.append(
            {
                "alteration": name,
                "found": len(found),
                "same_best_guess_pct": round(100 * float(np.mean(same)), 1) if same else None,
                "median_km_apart": round(float(np.median(apart)), 0) if apart.size else None,
                "p90_km_apart": round(float(np.percentile(apart, 90)), 0) if apart.size else None,
                # Against the truth: the copy answered by the model, or given the original's answer
                "own_within_2500_km_pct": _within(own, 2500.0),
                "reused_within_2500_km_pct": _within(reused, 2500.0),
                "own_median_error_km": _median(own),
                "reused_median_error_km": _median(reused),
            }
        )
        log.info("%s: %d copies found and answered", name, len(found))
    result = {
        "protocol": {
            "photos": len(paths),
            "model_version": answers[0].get("model_version"),
            "match_distance": fingerprints.MATCH_DISTANCE,
            "rule": "each copy the fingerprint finds is answered by the model; its best guess "
            "is compared with the original's",
        },
        "original_error_km": {
            "median": _median(errors),
            "within_2500_km_pct": _within(errors, 2500.0),
        },
        "rows": rows,
    }
    out = options.output_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "repost-predictions.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(result: Mapping[str, Any]) -> str:
    """A plain table: per alteration, how often and how far the copy's best guess moves."""
    error = result["original_error_km"]
    lines = [
        f"{result['protocol']['photos']} photos; the model's own error on the originals: median "
        f"{error['median']} km, {error['within_2500_km_pct']} % within 2,500 km. Per copy found: "
        "how often its best guess is the original's, how far apart, and % within 2,500 km of "
        "the truth answered itself / given the original's answer.",
        f"{'alteration':<16}{'found':>6}{'same guess %':>14}{'median km':>11}{'p90 km':>9}"
        f"{'own %':>8}{'reused %':>10}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['alteration']:<16}{row['found']:>6}{row['same_best_guess_pct']!s:>14}"
            f"{row['median_km_apart']!s:>11}{row['p90_km_apart']!s:>9}"
            f"{row['own_within_2500_km_pct']!s:>8}{row['reused_within_2500_km_pct']!s:>10}"
        )
    return "\n".join(lines)
