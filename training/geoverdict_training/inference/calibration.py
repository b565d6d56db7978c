"""Temperature scaling (Guo et al., ICML 2017): probabilities that mean what they say.

A network trained by cross-entropy on a few thousand photos is overconfident on photos it never
saw: the demo model's top cell had p 0.57 on average and was right for 6 % of new photos. Each
head's logits are divided by its temperature T before the softmax (T > 1 spreads the mass,
T < 1 sharpens it); a head's ranking never changes. T minimises the negative log-likelihood
(NLL) of labels the model was not trained on: whole photographers held out.

The hierarchical product then multiplies the partitions' calibrated probabilities. A product of
calibrated factors need not be calibrated (the partitions are not independent: one photo makes
all of them sure or unsure at once), so the product gets a temperature of its own,
p(f) = softmax(log prod_j p_j(ancestor_j(f)) / T_h), kept only where it lowers the NLL of the
fine classes. It changes how sure the answer is, never which fine cell is best; the partitions'
temperatures can change that too, as they reweigh the partitions in the product.

Fitting is deterministic, a golden-section search over log T: the NLL is convex in 1/T (a
log-sum-exp of a linear function minus a linear function), so it has one minimum there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from geoverdict_training.exceptions import ConfigError, TensorError
from geoverdict_training.inference.hierarchical import hierarchical_scores
from geoverdict_training.vocabulary import NO_LABEL

T_MIN, T_MAX = 0.01, 100.0  # the search range; a fitted T at a bound says the data is odd
_SEARCH_STEPS = 60  # golden-section steps: the bracket shrinks by 0.618 each, to ~1e-12 of log T
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0
# A hierarchy temperature must lower the fine NLL by more than this (nats per photo) to be kept,
# so that noise in the search does not turn T_h = 1 into 1.0001.
MIN_GAIN = 1e-4


@dataclass(frozen=True)
class Calibration:
    """Temperatures of a model's heads and of its hierarchical product; 1 where not given."""

    temperatures: Mapping[str, float] = field(default_factory=dict)  # head name -> T
    hierarchy: float = 1.0  # on the log of the hierarchical product

    def __post_init__(self) -> None:
        for name, value in (*self.temperatures.items(), ("hierarchy", self.hierarchy)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"calibration: temperature of {name} must be a number")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"calibration: temperature of {name} must be > 0, got {value}")

    def temperature(self, head: str) -> float:
        """The temperature of `head` (1 for a head that was not calibrated)."""
        return float(self.temperatures.get(head, 1.0))

    def scale(self, logits: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """head -> (B, n) logits divided by the head's temperature."""
        return {
            head: z if self.temperature(head) == 1.0 else z.float() / self.temperature(head)
            for head, z in logits.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """The form stored in checkpoints and in an archive's metadata.json."""
        return {"temperatures": dict(self.temperatures), "hierarchy": self.hierarchy}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Inverse of to_dict; a malformed entry raises ConfigError."""
        try:
            temperatures = {str(k): float(v) for k, v in data["temperatures"].items()}
            return cls(temperatures, float(data["hierarchy"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"malformed calibration {data!r}: {exc}") from exc


def _labelled(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, n) float64 logits and (M,) labels of the rows that have a label."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise TensorError(
            f"expected (N, n) logits and (N,) labels, got {tuple(logits.shape)}, "
            f"{tuple(labels.shape)}"
        )
    keep = labels != NO_LABEL
    z, y = logits[keep].double(), labels[keep].long()
    if bool(((y < 0) | (y >= logits.shape[1])).any()):
        raise TensorError(f"labels out of range [{NO_LABEL}, {logits.shape[1]})")
    return z, y


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / T)[label] over the rows with a label (NaN where none has)."""
    z, y = _labelled(logits, labels)
    if y.numel() == 0:
        return math.nan
    log_p = (z / temperature).log_softmax(dim=-1)  # (M, n)
    return float(-log_p.gather(1, y[:, None]).mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in [T_MIN, T_MAX] minimising nll(logits, labels, T); 1 without labelled rows."""
    z, y = _labelled(logits, labels)
    if y.numel() == 0:
        return 1.0

    def loss(log_t: float) -> float:
        log_p = (z / math.exp(log_t)).log_softmax(dim=-1)
        return float(-log_p.gather(1, y[:, None]).mean())

    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a, b = hi - _INV_PHI * (hi - lo), lo + _INV_PHI * (hi - lo)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(_SEARCH_STEPS):
        if loss_a <= loss_b:  # the minimum lies in [lo, b]
            hi, b, loss_b = b, a, loss_a
            a = hi - _INV_PHI * (hi - lo)
            loss_a = loss(a)
        else:  # in [a, hi]
            lo, a, loss_a = a, b, loss_b
            b = lo + _INV_PHI * (hi - lo)
            loss_b = loss(b)
    return math.exp((lo + hi) / 2.0)


def fit_calibration(
    logits: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    partitions: Sequence[str],
    ancestors: torch.Tensor | np.ndarray | None,
) -> Calibration:
    """Temperatures of every head from held-out (N, n) logits and (N,) labels (-1: none), then
    of the hierarchical product of the `partitions` heads (coarse -> fine), if it helps."""
    temperatures = {head: fit_temperature(z, labels[head]) for head, z in logits.items()}
    hierarchy = 1.0
    if partitions and ancestors is not None:
        scaled = Calibration(temperatures).scale(logits)
        # (N, n_fine): log of the product of the calibrated probabilities
        scores = hierarchical_scores([scaled[name] for name in partitions], ancestors)
        fine = labels[partitions[-1]]
        candidate = fit_temperature(scores, fine)
        if nll(scores, fine, candidate) < nll(scores, fine) - MIN_GAIN:
            hierarchy = candidate
    return Calibration(temperatures, hierarchy)
