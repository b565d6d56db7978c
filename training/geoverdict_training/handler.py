"""The TorchServe handler: a batch of image requests in, one contract reply per image out.

Packaged into every archive by `geoverdict export` (with the geoverdict_training code beside
it). Each request body is the raw bytes of one image. Every image is decoded on its own
(images.decode_image: draft-mode JPEG, EXIF orientation, any mode to RGB, size and bomb limits);
one that fails gets an error reply with a stable code and the rest of the batch goes on. The
good images go through the model in one forward pass, with the archive's temperatures applied
(calibration.py, through the Predictor). An empty body answers the `empty` error, with the
model version: that is how the service asks which model is serving.

Settings (the archive's model-config.yaml, `handler:` section): max_image_bytes (default 20 MB),
threads (torch threads per worker; default the CPU count divided by maxWorkers).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from geoverdict_training.bundle import read_bundle
from geoverdict_training.exceptions import ImageError, TrainingError
from geoverdict_training.images import SERVING_MAX_BYTES, decode_image
from geoverdict_training.replies import (
    INTERNAL,
    UNSUPPORTED,
    error_reply,
    image_facts,
    prediction_reply,
)
from geoverdict_training.scene_names import scene_names

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


class GeoverdictHandler(BaseHandler):
    """Geolocation of a batch of images with a geoverdict model archive."""

    def initialize(self, context: Any) -> None:
        """Load the bundle from the unpacked archive; pick device and threads."""
        properties = context.system_properties
        settings = getattr(context, "model_yaml_config", None) or {}
        options = settings.get("handler", {}) or {}
        workers = int(settings.get("maxWorkers", 1) or 1)
        torch.set_num_threads(int(options.get("threads", max(1, (os.cpu_count() or 1) // workers))))
        gpu = properties.get("gpu_id")
        use_gpu = torch.cuda.is_available() and gpu is not None
        self.device = torch.device(f"cuda:{gpu}" if use_gpu else "cpu")
        self.max_bytes = int(options.get("max_image_bytes", SERVING_MAX_BYTES))
        bundle = read_bundle(Path(properties["model_dir"]))
        if not bundle.partitions:
            raise TrainingError("a scene-only model cannot answer locations; export a geo model")
        self.bundle = bundle
        self.version = bundle.version
        self.predictor = bundle.predictor(self.device)
        _ = bundle.partitions[-1].radius_km  # the cells' radii: computed once, not per request
        self.transform = bundle.transform()
        self.names = scene_names()
        self.initialized = True
        log.info("geoverdict handler: %s on %s", self.version, self.device)

    def preprocess(self, data: list[Any]) -> list[dict[str, Any]]:
        """Decode every request on its own: an item is its tensor and facts, or its error."""
        self._report_batch_size(len(data))
        items: list[dict[str, Any]] = []
        for row in data:
            started = time.perf_counter()
            try:
                body = _body(row)
                image = decode_image(body, min_side=self.bundle.resize, max_bytes=self.max_bytes)
                tensor = self.transform(image)  # (3, H, W)
                facts = image_facts(body, (time.perf_counter() - started) * 1000.0)
                items.append({"tensor": tensor, "facts": facts})
            except ImageError as exc:
                items.append({"reply": error_reply(self.version, exc.code, str(exc))})
            except Exception as exc:  # one image must never fail the batch
                log.exception("unexpected error decoding an image")
                items.append({"reply": error_reply(self.version, INTERNAL, repr(exc))})
        return items

    def _report_batch_size(self, size: int) -> None:
        """The BatchSize gauge (docs/operations.md): whether server-side batches really fill."""
        metrics = getattr(self.context, "metrics", None)
        if metrics is not None:
            from ts.metrics.metric_type_enum import MetricTypes  # noqa: PLC0415

            metrics.add_metric("BatchSize", size, "count", metric_type=MetricTypes.GAUGE)

    def inference(self, items: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        """One forward pass over the batch's good images."""
        good = [item for item in items if "tensor" in item]
        if not good:
            return items
        started = time.perf_counter()
        batch = torch.stack([item["tensor"] for item in good]).to(self.device)  # (B, 3, H, W)
        output = self.predictor(batch)
        if output.cells is None:  # initialize refused scene-only models
            raise TrainingError("the model predicts no cells")
        cells = output.cells.double().cpu().numpy()  # (B, n_fine)
        scenes = {name: p.float().cpu().numpy() for name, p in output.scenes.items()}
        elapsed = (time.perf_counter() - started) * 1000.0
        for k, item in enumerate(good):
            item["result"] = (cells[k], {name: p[k] for name, p in scenes.items()}, elapsed)
        return items

    def postprocess(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One reply per request, in request order."""
        fine = self.bundle.partitions[-1]
        replies = []
        for item in items:
            if "reply" in item:
                replies.append(item["reply"])
                continue
            cells, scenes, elapsed = item["result"]
            replies.append(
                prediction_reply(
                    self.version, fine, cells, scenes, self.names, item["facts"], elapsed
                )
            )
        return replies


_service = GeoverdictHandler()


def handle(data: list[Any] | None, context: Any) -> list[dict[str, Any]] | None:
    """TorchServe's entry point: initialise once, then answer each batch."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
