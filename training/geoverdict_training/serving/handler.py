"""The TorchServe handler: a batch of image requests in, one contract reply per image out.

Packaged into every archive by serving/archive.py (with the serving layers of
geoverdict_training beside it). TorchServe's part is only this adapter: each request body is the
raw bytes of one image, answered by the Responder (responder.py: limits, decode, model, replies,
the same code as the Triton model and `geoverdict locate`); the BatchSize metric tells whether
server-side batches fill.

Settings (the archive's model-config.yaml, `handler:` section): those of ResponderOptions, and
threads (torch threads per worker; default the CPU count divided by maxWorkers).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from geoverdict_training.exceptions import ImageError
from geoverdict_training.images.decode import UNSUPPORTED
from geoverdict_training.serving.responder import (
    BatchImage,
    ModelReply,
    Responder,
    ResponderOptions,
)

log = logging.getLogger(__name__)


def _body(row: Any) -> bytes:
    """The request's bytes; raises ImageError(unsupported) for a body that is not bytes."""
    body = row.get("data") or row.get("body") if isinstance(row, dict) else row
    if body is None:
        return b""
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, bytes):
        return body
    raise ImageError(UNSUPPORTED, "send the image bytes as the request body (not JSON or a form)")


def _body_or_error(row: Any) -> bytes | Exception:
    try:
        return _body(row)
    except ImageError as exc:
        return exc


class GeoverdictHandler(BaseHandler):
    """Geolocation of a batch of images with a geoverdict model archive."""

    def initialize(self, context: Any) -> None:
        """Load the archive's model; pick device, threads, decoder, precision."""
        properties = context.system_properties
        settings = getattr(context, "model_yaml_config", None) or {}
        options = settings.get("handler", {}) or {}
        workers = int(settings.get("maxWorkers", 1) or 1)
        torch.set_num_threads(int(options.get("threads", max(1, (os.cpu_count() or 1) // workers))))
        gpu = properties.get("gpu_id")
        use_gpu = torch.cuda.is_available() and gpu is not None
        self.responder = Responder.from_archive(
            Path(properties["model_dir"]),
            torch.device(f"cuda:{gpu}" if use_gpu else "cpu"),
            ResponderOptions.from_mapping(options),
        )
        self.version = self.responder.version
        self.initialized = True

    def preprocess(self, data: list[Any]) -> list[BatchImage]:
        """Each request's crop and facts, or its error reply."""
        self._report_batch_size(len(data))
        return self.responder.prepare([_body_or_error(row) for row in data])

    def inference(self, items: list[BatchImage], *args: Any, **kwargs: Any) -> list[BatchImage]:
        """One forward pass over the batch's good images."""
        return self.responder.infer(items)

    def postprocess(self, items: list[BatchImage]) -> list[ModelReply]:
        """One reply per request, in request order."""
        return self.responder.replies(items)

    def _report_batch_size(self, size: int) -> None:
        """The BatchSize gauge (docs/operations.md): whether server-side batches really fill."""
        metrics = getattr(self.context, "metrics", None)
        if metrics is not None:
            from ts.metrics.metric_type_enum import MetricTypes  # noqa: PLC0415

            metrics.add_metric("BatchSize", size, "count", metric_type=MetricTypes.GAUGE)


_service = GeoverdictHandler()


def handle(data: list[Any] | None, context: Any) -> list[ModelReply] | None:
    """TorchServe's entry point: initialise once, then answer each batch."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
