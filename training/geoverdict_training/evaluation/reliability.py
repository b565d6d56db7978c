"""How far a model's sureness can be trusted: expected calibration error and reliability bins.

The event is the one a user sees: "the top-1 fine cell contains the photo's true position",
decided by S2 containment (the ancestor, at the cell's level, of the photo's leaf cell is the
cell), so a photo whose position lies in no cell of the model is a miss. Confidence is the top-1
probability. Photos are put into 10 equal-width confidence bins ([0, 0.1), ..., [0.9, 1]); the
ECE is the photo-weighted mean gap |accuracy - confidence| over the bins (Naeini et al., 2015;
Guo et al., 2017). A calibrated model has an ECE near 0: of the photos answered with p 0.3,
about 30 % are right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from geoverdict_training.exceptions import DataFileError, TensorError
from geoverdict_training.geo import s2
from geoverdict_training.geo.partitions import Partition

BINS = 10


@dataclass(frozen=True)
class Bin:
    """Photos whose confidence lies in [lo, lo + 1/BINS)."""

    lo: float
    n: int
    confidence: float | None  # mean top-1 probability; None for an empty bin
    accuracy: float | None  # share of hits


@dataclass(frozen=True)
class Reliability:
    """Calibration of the top-1 answer over a set of photos."""

    n: int
    ece: float
    top1_cell_accuracy: float  # share of photos whose top-1 cell contains their position
    mean_confidence: float
    nll: float  # mean -log p(cell holding the position), over photos that lie in a cell
    nll_photos: int  # those photos
    bins: tuple[Bin, ...]

    def to_json(self) -> dict[str, Any]:
        """`{"ece", "top1_cell_accuracy", "mean_confidence", "nll", "bins": [[lo, n, confidence,
        accuracy], ...], "n", "nll_photos"}`; an empty bin's confidence and accuracy are null."""
        return {
            "ece": self.ece,
            "top1_cell_accuracy": self.top1_cell_accuracy,
            "mean_confidence": self.mean_confidence,
            "nll": self.nll,
            "bins": [[b.lo, b.n, b.confidence, b.accuracy] for b in self.bins],
            "n": self.n,
            "nll_photos": self.nll_photos,
        }

    def table(self) -> str:
        """Plain text for people: the summary, then one line per non-empty bin."""
        lines = [
            f"calibration: ECE {self.ece:.3f}, top-1 cell right {self.top1_cell_accuracy:.1%}, "
            f"mean confidence {self.mean_confidence:.1%}, NLL {self.nll:.3f} "
            f"({self.nll_photos} of {self.n} photos lie in a cell)"
        ]
        for b in self.bins:
            if b.n:
                lines.append(
                    f"  p {b.lo:.1f}-{b.lo + 1 / BINS:.1f}: {b.n:4d} photos, "
                    f"confidence {b.confidence:.3f}, right {b.accuracy:.3f}"
                )
        return "\n".join(lines)


def top1_cell_hits(
    fine: Partition,
    best: npt.NDArray[np.int64],
    lat: npt.ArrayLike,
    lon: npt.ArrayLike,
) -> npt.NDArray[np.bool_]:
    """(N,) whether fine class `best[k]`'s cell contains photo k's position (degrees)."""
    best = np.asarray(best, dtype=np.int64)
    if best.ndim != 1 or ((best < 0) | (best >= len(fine))).any():
        raise TensorError(f"best classes must be a (N,) array in [0, {len(fine)})")
    leaves = s2.leaf_cell_ids(lat, lon)  # (N,)
    if leaves.shape != best.shape:
        raise TensorError(f"{best.size} answers for {leaves.size} positions")
    cells = fine.cell_ids[best]  # (N,)
    hits = np.zeros(best.shape, dtype=bool)
    for level in np.unique(fine.levels[best]):
        at_level = fine.levels[best] == level
        hits[at_level] = s2.parent_ids(leaves[at_level], int(level)) == cells[at_level]
    return hits


def reliability(
    confidence: npt.ArrayLike, hits: npt.ArrayLike, p_true: npt.ArrayLike
) -> Reliability:
    """Reliability of answers with top-1 probabilities `confidence` (N,), right where `hits`,
    and the probability each gave the true cell `p_true` (NaN where none holds the photo)."""
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    right = np.asarray(hits, dtype=bool).ravel()
    truth = np.asarray(p_true, dtype=np.float64).ravel()
    if conf.size == 0:
        raise TensorError("no photos to measure calibration on")
    if right.shape != conf.shape or truth.shape != conf.shape:
        raise TensorError("confidence, hits and p_true must have the same length")
    if ((conf < 0) | (conf > 1 + 1e-6)).any():
        raise TensorError("confidences must be probabilities in [0, 1]")
    index = np.minimum((conf * BINS).astype(np.int64), BINS - 1)  # p = 1 joins the last bin
    bins, ece = [], 0.0
    for b in range(BINS):
        members = index == b
        n = int(members.sum())
        if n == 0:
            bins.append(Bin(b / BINS, 0, None, None))
            continue
        mean_conf, accuracy = float(conf[members].mean()), float(right[members].mean())
        ece += n / conf.size * abs(accuracy - mean_conf)
        bins.append(Bin(b / BINS, n, mean_conf, accuracy))
    in_cell = ~np.isnan(truth)
    tiny = np.finfo(np.float64).tiny  # a hierarchical probability can underflow to 0
    nll = float(-np.log(np.maximum(truth[in_cell], tiny)).mean()) if in_cell.any() else np.nan
    return Reliability(
        n=int(conf.size),
        ece=float(ece),
        top1_cell_accuracy=float(right.mean()),
        mean_confidence=float(conf.mean()),
        nll=nll,
        nll_photos=int(in_cell.sum()),
        bins=tuple(bins),
    )


def plot_reliability(curves: dict[str, Reliability], path: Path) -> None:
    """A reliability diagram (accuracy against confidence per bin, the diagonal is perfect)
    with one curve per entry of `curves` (e.g. before / after calibration), as PNG."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")  # files only: no display on servers
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise DataFileError("--plot needs matplotlib (pip install matplotlib)") from exc
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for label, result in curves.items():
        filled = [
            (b.confidence, b.accuracy)
            for b in result.bins
            if b.confidence is not None and b.accuracy is not None
        ]
        axis.plot(
            [confidence for confidence, _ in filled],
            [accuracy for _, accuracy in filled],
            marker="o",
            label=f"{label} (ECE {result.ece:.3f})",
        )
    axis.set(
        xlabel="confidence (top-1 probability)",
        ylabel="share whose top-1 cell holds the photo",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"reliability, {next(iter(curves.values())).n} photos",
    )
    axis.legend(loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise DataFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(figure)
