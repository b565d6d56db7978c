"""A distributed sampler that can start an epoch part-way, so a resumed run sees the same photos
in the same order as an uninterrupted one would have."""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler

from geoverdict_training.exceptions import ConfigError


class ResumableSampler(DistributedSampler[int]):
    """DistributedSampler (seeded shuffle per epoch, rank split) that skips the first samples.

    Works without a process group too (rank 0 of 1). The order of an epoch depends only on the
    seed and the epoch, so skipping `start` samples continues where a checkpoint left off.
    """

    def __init__(self, dataset: Sized, *, rank: int, world_size: int, seed: int) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Shuffle for `epoch`, and skip its first `start` samples of this rank."""
        if not 0 <= start <= self.num_samples:
            raise ConfigError(f"cannot start epoch at sample {start} of {self.num_samples}")
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())  # (num_samples,) this rank's share of the epoch
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start
