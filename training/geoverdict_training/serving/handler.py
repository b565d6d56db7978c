"""The TorchServe handler: a batch of image requests in, one contract reply per image out.

Packaged into every archive by `geoverdict export` (with the geoverdict_training code beside
it). Each request body is the raw bytes of one image; its header is checked first
(images.read_header: size, allowed formats, pixel count, aspect ratio). One that fails gets an
error reply with a stable code and the rest of the batch goes on. The good images go through the
model in one forward pass, with the archive's temperatures applied (calibration.py, through the
Predictor). An empty body answers the `empty` error, with the model version: that is how the
service asks which model is serving.

On a CPU every image is decoded by Pillow on its own (draft-mode JPEG: the fastest there). On a
GPU the JPEGs of a batch are decoded by the GPU in one call and cropped there
(device_images.py), the rest by Pillow; the backbone runs in bf16 autocast and channels_last,
the softmax and the hierarchical product in fp32.

Settings (the archive's model-config.yaml, `handler:` section): max_image_bytes (default 20 MB),
max_image_pixels (50 Mpx), max_aspect_ratio (16), threads (torch threads per worker; default
the CPU count divided by maxWorkers), decode (`auto`: on the GPU when the worker has one;
`pillow`; `device`: the device path also on a CPU, for tests), precision (`auto`: bf16 on a GPU
that supports it; `fp32`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from geoverdict_training.exceptions import ConfigError, ImageError, TrainingError
from geoverdict_training.images.decode import (
    SERVING_LIMITS,
    UNSUPPORTED,
    ImageLimits,
    decode_header,
    read_header,
)
from geoverdict_training.images.device import centre_crop, crop_all, decode_batch, model_input
from geoverdict_training.serving.bundle import read_bundle
from geoverdict_training.serving.replies import INTERNAL, error_reply, image_facts, prediction_reply
from geoverdict_training.vocabulary import scene_names

log = logging.getLogger(__name__)

DECODERS = ("auto", "pillow", "device")
PRECISIONS = ("auto", "fp32")


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


def _limits(options: dict[str, Any]) -> ImageLimits:
    """The image limits of the handler's settings (defaults: images.SERVING_LIMITS)."""
    return ImageLimits(
        max_bytes=int(options.get("max_image_bytes", SERVING_LIMITS.max_bytes)),
        max_pixels=int(options.get("max_image_pixels", SERVING_LIMITS.max_pixels)),
        max_aspect=float(options.get("max_aspect_ratio", SERVING_LIMITS.max_aspect)),
    )


def _choice(options: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = str(options.get(key, "auto"))
    if value not in choices:
        raise ConfigError(f"handler setting {key!r} must be one of {choices}, got {value!r}")
    return value


class GeoverdictHandler(BaseHandler):
    """Geolocation of a batch of images with a geoverdict model archive."""

    def initialize(self, context: Any) -> None:
        """Load the bundle from the unpacked archive; pick device, threads, decoder, precision."""
        properties = context.system_properties
        settings = getattr(context, "model_yaml_config", None) or {}
        options = settings.get("handler", {}) or {}
        workers = int(settings.get("maxWorkers", 1) or 1)
        torch.set_num_threads(int(options.get("threads", max(1, (os.cpu_count() or 1) // workers))))
        gpu = properties.get("gpu_id")
        use_gpu = torch.cuda.is_available() and gpu is not None
        self.device = torch.device(f"cuda:{gpu}" if use_gpu else "cpu")
        self.limits = _limits(options)
        decode = _choice(options, "decode", DECODERS)
        self.device_decode = decode == "device" or (decode == "auto" and use_gpu)
        precision = _choice(options, "precision", PRECISIONS)
        bf16 = use_gpu and precision == "auto" and torch.cuda.is_bf16_supported()
        self.autocast = torch.bfloat16 if bf16 else None
        self.channels_last = use_gpu
        bundle = read_bundle(Path(properties["model_dir"]))
        if not bundle.partitions:
            raise TrainingError("a scene-only model cannot answer locations; export a geo model")
        self.bundle = bundle
        self.version = bundle.version
        self.predictor = bundle.predictor(self.device, channels_last=self.channels_last)
        _ = bundle.partitions[-1].radius_km  # the cells' radii: computed once, not per request
        self.transform = bundle.transform()
        self.spec = bundle.input_spec()
        self.names = scene_names()
        self.initialized = True
        log.info(
            "geoverdict handler: %s on %s (decode: %s, autocast: %s)", self.version, self.device,
            "device" if self.device_decode else "pillow", self.autocast,
        )  # fmt: skip

    def preprocess(self, data: list[Any]) -> list[dict[str, Any]]:
        """Each request's crop and facts, or its error reply."""
        self._report_batch_size(len(data))
        if self.device_decode:
            return self._preprocess_on_device(data)
        items: list[dict[str, Any]] = []
        for row in data:
            started = time.perf_counter()
            try:
                header = read_header(_body(row), self.limits)
                tensor = self.transform(decode_header(header, self.bundle.resize))  # (3, S, S)
                facts = image_facts(header, (time.perf_counter() - started) * 1000.0)
                items.append({"tensor": tensor, "facts": facts})
            except Exception as exc:  # one image must never fail the batch
                items.append(self._error(exc))
        return items

    def _preprocess_on_device(self, data: list[Any]) -> list[dict[str, Any]]:
        """The batch's JPEGs decoded and cropped on the device in one call, the rest by Pillow."""
        items: list[dict[str, Any]] = [{} for _ in data]
        bodies: dict[int, bytes] = {}
        for k, row in enumerate(data):
            try:
                bodies[k] = _body(row)
            except ImageError as exc:
                items[k] = self._error(exc)
        try:
            decoded = decode_batch(
                list(bodies.values()), self.device, self.limits, self.bundle.resize
            )
            crop = functools.partial(centre_crop, spec=self.spec)
            for k, image in zip(bodies, decoded, strict=True):
                if isinstance(image, ImageError):
                    items[k] = self._error(image)
                    continue
                (tensor,) = crop_all([image], crop, self.transform)  # (3, S, S)
                items[k] = {"tensor": tensor, "facts": image_facts(image.header, image.decode_ms)}
        except Exception as exc:  # a device failure: every image of the batch gets the error
            for k in bodies:
                items[k] = self._error(exc)
        return items

    def _error(self, exc: Exception) -> dict[str, Any]:
        """The reply item of an image that cannot be answered."""
        if isinstance(exc, ImageError):
            return {"reply": error_reply(self.version, exc.code, str(exc))}
        log.exception("unexpected error decoding an image", exc_info=exc)
        return {"reply": error_reply(self.version, INTERNAL, repr(exc))}

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
        batch = model_input([item["tensor"] for item in good], self.spec, self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)  # (B, 3, H, W) NHWC
        output = self.predictor.from_logits(self.predictor.logits(batch, self.autocast))
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
