"""Process group set-up for `torchrun`: the same `geoverdict train` command runs on one CPU, one
GPU, or many GPUs on many nodes.

A process joins a group only when torchrun launched it with WORLD_SIZE > 1 (torchrun sets RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT); otherwise it trains alone, no group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from geoverdict_training.exceptions import ConfigError


@dataclass(frozen=True)
class Process:
    """This process's place in the run, and the device it trains on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and the progress bar; the others only train."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group was set up."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {text!r}") from None


def _device(preference: str, local_rank: int) -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("config key 'device': cuda asked for, but no GPU is available")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(device: str = "auto") -> Process:
    """Join the torchrun process group where there is one; pick this process's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    chosen = _device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Process(rank, local_rank, world_size, chosen)


def teardown(process: Process) -> None:
    """Leave the process group."""
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(process: Process) -> None:
    """Wait for every rank (a no-op alone)."""
    if process.distributed:
        dist.barrier()
