"""`geoverdict mismatch`: how well the `location_mismatch` flag tells true claims from false
ones, measured with the service's own rule on photos the model never saw.

Input: one line per photo, `{"id", "lat", "lon", "reply"}` with the model's reply for it, as
`geoverdict evaluate --model ... --predictions-out` writes them for the validation photographers.
Each photo is claimed twice: at its true position (an honest post) and at another photo's
position at least `--false-km` away (a false one). For each threshold and maximum probability
the table gives the false-flag rate on true claims and the detection rate on false claims; the
ROC AUC ranks the claims by the model's probability that the photo was taken within the
threshold of the claim (lower: more likely false). The default is the setting that detects the
most false claims while flagging at most `--max-false-flags` of the true ones.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from geoverdict_common.exceptions import ContractError

REQUIRES = ("geoverdict_service",)  # the service's own mismatch rule is measured

THRESHOLDS_KM = (200.0, 750.0, 1500.0, 2500.0)
MAX_MASSES = (0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class Photo:
    """A validation photo: its true position and the model's reply."""

    id: str
    lat: float
    lon: float
    reply: dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One setting of the flag and how it does."""

    threshold_km: float
    max_mass: float
    false_flag_rate: float  # share of true claims flagged
    detection_rate: float  # share of false claims flagged
    auc: float  # of the probability within threshold_km, over all claims


@dataclass(frozen=True)
class Measurement:
    """The table, the chosen default and what it was measured on."""

    photos: int
    false_km: float
    max_false_flags: float
    rows: list[Row]
    chosen: Row | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        data = asdict(self)
        return data

    def table(self) -> str:
        """A Markdown table, the chosen row marked."""
        lines = [
            f"{self.photos} validation photos; each claimed at its true position and at another "
            f"photo's position at least {self.false_km:,.0f} km away.",
            "",
            "| threshold | max probability | false flags on true claims | false claims detected "
            "| ROC AUC |",
            "|---|---|---|---|---|",
        ]
        for row in self.rows:
            mark = " **(default)**" if row == self.chosen else ""
            lines.append(
                f"| {row.threshold_km:,.0f} km | {row.max_mass:g}{mark} "
                f"| {row.false_flag_rate:.1%} | {row.detection_rate:.1%} | {row.auc:.3f} |"
            )
        return "\n".join(lines)


class MismatchError(Exception):
    """The predictions file cannot be read or measured."""


def load(path: Path) -> list[Photo]:
    """The photos of a predictions file (lines whose reply is an error are left out)."""
    photos = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise MismatchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        try:
            doc = json.loads(line)
            if "error" not in doc["reply"]:
                lat, lon = float(doc["lat"]), float(doc["lon"])
                photos.append(Photo(str(doc["id"]), lat, lon, doc["reply"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise MismatchError(
                f"{path}:{number}: not a line of `evaluate --predictions-out`: {exc!r}"
            ) from exc
    return photos


def false_claims(
    photos: Sequence[Photo], min_km: float, seed: int = 0
) -> list[tuple[float, float]]:
    """For each photo, another photo's position at least `min_km` away (seeded choice)."""
    from geoverdict_common.distances import haversine_km  # noqa: PLC0415

    rng = random.Random(seed)
    claims = []
    for photo in photos:
        far = [
            (p.lat, p.lon)
            for p in photos
            if haversine_km(photo.lat, photo.lon, p.lat, p.lon) >= min_km
        ]
        if not far:
            raise MismatchError(f"no photo lies {min_km} km from {photo.id}: lower --false-km")
        claims.append(rng.choice(far))
    return claims


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney)."""
    if not positives or not negatives:
        return float("nan")
    wins = 0.0
    for p in positives:
        for n in negatives:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(positives) * len(negatives))


def measure(
    photos: Sequence[Photo],
    false_km: float = 2500.0,
    max_false_flags: float = 0.05,
    thresholds_km: Sequence[float] = THRESHOLDS_KM,
    max_masses: Sequence[float] = MAX_MASSES,
) -> Measurement:
    """Every setting's false-flag and detection rates, and the default chosen from them."""
    from geoverdict_common import contract  # noqa: PLC0415
    from geoverdict_service.events import Claim  # noqa: PLC0415
    from geoverdict_service.verdicts import VerdictPolicy, consistency  # noqa: PLC0415

    predictions = [contract.checked_prediction(p.reply) for p in photos]
    true = [Claim(p.lat, p.lon, "event") for p in photos]
    false = [Claim(lat, lon, "event") for lat, lon in false_claims(photos, false_km)]
    rows = []
    for threshold in thresholds_km:
        probe = VerdictPolicy(mismatch_threshold_km=threshold)
        # The score of "this claim is false": 1 - the probability within the threshold.
        scores = {
            kind: [
                1.0 - consistency(pred, claim, probe)["probability_within_threshold"]
                for pred, claim in zip(predictions, claims, strict=True)
            ]
            for kind, claims in (("true", true), ("false", false))
        }
        auc = roc_auc(scores["false"], scores["true"])
        for max_mass in max_masses:
            policy = VerdictPolicy(mismatch_threshold_km=threshold, mismatch_max_mass=max_mass)
            flagged = {
                kind: sum(
                    consistency(pred, claim, policy)["location_mismatch"]
                    for pred, claim in zip(predictions, claims, strict=True)
                )
                / len(claims)
                for kind, claims in (("true", true), ("false", false))
            }
            rows.append(Row(threshold, max_mass, flagged["true"], flagged["false"], auc))
    allowed = [r for r in rows if r.false_flag_rate <= max_false_flags]
    chosen = max(allowed, key=lambda r: (r.detection_rate, -r.false_flag_rate), default=None)
    return Measurement(len(photos), false_km, max_false_flags, rows, chosen)


USER_ERRORS: tuple[type[Exception], ...] = (MismatchError, ContractError)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `mismatch` command."""
    parser = subparsers.add_parser(
        "mismatch",
        help="measure the location_mismatch flag on validation predictions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--predictions", type=Path, required=True, metavar="FILE.jsonl")
    parser.add_argument("--false-km", type=float, default=2500.0)
    parser.add_argument("--max-false-flags", type=float, default=0.05)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    photos = load(args.predictions)
    result = measure(photos, args.false_km, args.max_false_flags)
    print(json.dumps(result.to_json()) if args.json else result.table())
    return 0
