"""Exponential backoff for retrying an unavailable dependency (TorchServe, while paused)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from `initial_s` up to `max_s`; `reset()` after a success."""

    initial_s: float
    max_s: float
    _next_s: float = field(init=False)

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(
                f"backoff needs 0 < initial <= max, got {self.initial_s} and {self.max_s}"
            )
        self._next_s = self.initial_s

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long (capped)."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._next_s = self.initial_s
