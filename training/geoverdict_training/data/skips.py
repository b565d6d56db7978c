"""A tally of the rows a run skipped and why, reported in one summary line.

Bad rows (unreadable coordinates, missing files, undecodable images) never stop a run over
millions of photos; they are counted by reason, and the run reports them once at its end.
"""

from __future__ import annotations

from collections import Counter


class Skips:
    """Rows seen, and rows skipped by reason, for one input (a manifest, a folder, shards)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.seen = 0
        self.reasons: Counter[str] = Counter()

    @property
    def skipped(self) -> int:
        """Rows skipped, all reasons together."""
        return sum(self.reasons.values())

    @property
    def kept(self) -> int:
        """Rows seen and not skipped."""
        return self.seen - self.skipped

    def skip(self, reason: str, count: int = 1) -> None:
        """Count `count` rows (already counted as seen) as skipped for `reason`."""
        self.reasons[reason] += count

    def summary(self) -> str:
        """One line: `SOURCE: N rows, K kept, S skipped (2 bad coordinates, 1 missing file)`."""
        line = f"{self.source}: {self.seen} rows, {self.kept} kept, {self.skipped} skipped"
        if self.reasons:
            details = ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items()))
            line += f" ({details})"
        return line
