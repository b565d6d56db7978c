"""Exponential backoff, the one rule for every retry: TorchServe's requests (with jitter), image
fetches, and the health checks while the consumer is paused."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


def delay(attempt: int, initial_s: float, max_s: float = math.inf, jitter: bool = False) -> float:
    """The wait after failed attempt `attempt` (0 for the first): `initial_s` doubled each
    attempt, at most `max_s`; with `jitter`, a random 50-100 % of it, so that the retries of
    many threads spread out instead of arriving together."""
    wait = min(max_s, initial_s * 2**attempt)
    return wait * (0.5 + random.random() / 2) if jitter else wait


@dataclass
class Backoff:
    """Delays that double from `initial_s` up to `max_s`; `reset()` after a success."""

    initial_s: float
    max_s: float
    _attempt: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(
                f"backoff needs 0 < initial <= max, got {self.initial_s} and {self.max_s}"
            )

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long (capped)."""
        wait = delay(self._attempt, self.initial_s, self.max_s)
        if wait < self.max_s:  # at the cap it stays there: no count that grows for ever
            self._attempt += 1
        return wait

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._attempt = 0
