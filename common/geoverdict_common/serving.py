"""How TorchServe serves an archive: batch size, batch delay, workers and timeout, written into
the archive's model-config.yaml by `geoverdict export`, and the handler's image size limit.

The training code (export, the handler's decoder) reads these, so they live here; how the model
servers are configured beyond an archive (TorchServe on GPUs, Triton's repository) lives in
geoverdict_modelserver.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from geoverdict_common.exceptions import ServingConfigError

SERVING_MAX_BYTES = 20 * 1024 * 1024  # the model handler's default limit per image


@dataclass(frozen=True)
class ServingConfig:
    """TorchServe's per-model settings, written into the archive's model-config.yaml."""

    # With one torch thread per worker, small batches win on CPU (2 cores, images/s by batch
    # size 1/4/8/16: 60/64/57/46, docs/benchmarks.md); raise it on a GPU.
    batch_size: int = 4
    max_batch_delay_ms: int = 50
    # On CPU, one worker per core with one torch thread each beats one worker with all cores:
    # one worker decodes while the other computes (2 cores: 60 against 50 images/s).
    min_workers: int = 2
    max_workers: int = 2
    response_timeout_s: int = 60
    max_image_bytes: int = SERVING_MAX_BYTES

    def __post_init__(self) -> None:
        for key in ("batch_size", "min_workers", "max_workers", "response_timeout_s"):
            if getattr(self, key) < 1:
                raise ServingConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.max_batch_delay_ms < 0 or self.max_workers < self.min_workers:
            raise ServingConfigError("max_batch_delay must be >= 0 and max_workers >= min_workers")

    def to_yaml(self) -> str:
        """model-config.yaml: TorchServe's keys, then the handler's own section."""
        return yaml.safe_dump(
            {
                "batchSize": self.batch_size,
                "maxBatchDelay": self.max_batch_delay_ms,
                "minWorkers": self.min_workers,
                "maxWorkers": self.max_workers,
                "responseTimeout": self.response_timeout_s,
                "handler": {"max_image_bytes": self.max_image_bytes},
            },
            sort_keys=False,
        )
