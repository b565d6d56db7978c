"""A model answering a batch of images: header checks, decode, one forward pass, one reply each.

The TorchServe handler, the Triton model and `geoverdict locate` all answer through `Responder`,
so the image limits, EXIF orientation, calibration, hierarchy and reply building exist once.
Each image's header is checked first (images/decode.read_header: size, allowed formats, pixel
count, aspect ratio). One that fails gets an error reply with a stable code and the rest of the
batch goes on. The good images go through the model in one forward pass, with the archive's
temperatures applied (inference/calibration.py, through the Predictor). An empty body answers
the `empty` error, with the model version: that is how the service asks which model serves.

On a CPU every image is decoded by Pillow on its own (draft-mode JPEG: the fastest there). On a
GPU the JPEGs of a batch are decoded by the GPU in one call and cropped there
(images/device.py), the rest by Pillow; the backbone runs in bf16 autocast and channels_last,
the softmax and the hierarchical product in fp32.

Options (the archive's model-config.yaml, `handler:` section, or a model server's own
parameters): max_image_bytes (default 20 MB), max_image_pixels (50 Mpx), max_aspect_ratio (16),
decode (`auto`: on the GPU when there is one; `pillow`; `device`: the device path also on a
CPU, for tests), precision (`auto`: bf16 on a GPU that supports it; `fp32`), best_guess (by
default the archive's rule, inference/best_guess.py: `expected_distance` or `mass_within:KM`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geoverdict_training.exceptions import ConfigError, ImageError, TrainingError
from geoverdict_training.images.decode import (
    SERVING_LIMITS,
    ImageLimits,
    decode_header,
    read_header,
)
from geoverdict_training.images.device import centre_crop, crop_all, decode_batch, model_input
from geoverdict_training.inference.best_guess import GuessRule
from geoverdict_training.serving.bundle import ModelBundle, read_bundle
from geoverdict_training.serving.replies import (
    INTERNAL,
    ReplySettings,
    error_reply,
    image_facts,
    prediction_reply,
)
from geoverdict_training.vocabulary import scene_names

log = logging.getLogger(__name__)

DECODERS = ("auto", "pillow", "device")
PRECISIONS = ("auto", "fp32")
ModelReply = dict[str, Any]  # prediction.schema.json: a prediction, or an error with the version


def _choice(options: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = str(options.get(key, "auto"))
    if value not in choices:
        raise ConfigError(f"handler setting {key!r} must be one of {choices}, got {value!r}")
    return value


def _number(options: Mapping[str, Any], key: str, default: float, kind: type) -> Any:
    try:
        value = kind(options.get(key, default))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"handler setting {key!r} must be a number, got {options[key]!r}"
        ) from exc
    if value <= 0:
        raise ConfigError(f"handler setting {key!r} must be > 0, got {value}")
    return value


@dataclass(frozen=True)
class ResponderOptions:
    """How images are checked, decoded and computed; validated from a model server's settings."""

    limits: ImageLimits = SERVING_LIMITS
    decode: str = "auto"
    precision: str = "auto"
    best_guess: GuessRule | None = None  # None: the archive's own rule

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> ResponderOptions:
        """The options of a settings mapping (keys as in the module docstring)."""
        options = options or {}
        limits = ImageLimits(
            max_bytes=_number(options, "max_image_bytes", SERVING_LIMITS.max_bytes, int),
            max_pixels=_number(options, "max_image_pixels", SERVING_LIMITS.max_pixels, int),
            max_aspect=_number(options, "max_aspect_ratio", SERVING_LIMITS.max_aspect, float),
        )
        return cls(
            limits=limits,
            decode=_choice(options, "decode", DECODERS),
            precision=_choice(options, "precision", PRECISIONS),
            best_guess=GuessRule.parse(options["best_guess"])
            if options.get("best_guess")
            else None,
        )


@dataclass
class BatchImage:
    """One image of a batch: its crop and facts, its result, or its reply."""

    tensor: torch.Tensor | None = None  # (3, S, S) normalised crop
    facts: Any = None  # replies.ImageFacts
    result: tuple[Any, dict[str, Any], float] | None = None  # cells, scenes, model ms
    reply: ModelReply | None = None  # an error reply, decided before the model ran


class Responder:
    """A model bundle on a device, answering batches of encoded images."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: torch.device | str = "cpu",
        options: ResponderOptions | None = None,
    ) -> None:
        if not bundle.partitions:
            raise TrainingError("a scene-only model cannot answer locations; export a geo model")
        options = options or ResponderOptions()
        self.device = torch.device(device)
        on_gpu = self.device.type == "cuda"
        self.bundle = bundle
        self.version = bundle.version
        self.limits = options.limits
        self.device_decode = options.decode == "device" or (options.decode == "auto" and on_gpu)
        bf16 = on_gpu and options.precision == "auto" and torch.cuda.is_bf16_supported()
        self.autocast = torch.bfloat16 if bf16 else None
        self.channels_last = on_gpu
        self.predictor = bundle.predictor(self.device, channels_last=self.channels_last)
        _ = bundle.partitions[-1].radius_km  # the cells' radii: computed once, not per request
        self.transform = bundle.transform()
        self.spec = bundle.input_spec()
        self.names = scene_names()
        self.reply_settings = ReplySettings(best_guess=options.best_guess or bundle.guess_rule)
        log.info(
            "geoverdict model %s on %s (decode: %s, autocast: %s)",
            self.version,
            self.device,
            "device" if self.device_decode else "pillow",
            self.autocast,
        )

    @classmethod
    def from_archive(
        cls, path: Path, device: torch.device | str = "cpu", options: ResponderOptions | None = None
    ) -> Responder:
        """The responder of a .mar archive or a folder of its files."""
        return cls(read_bundle(path), device, options)

    def answer(self, bodies: Sequence[bytes | Exception]) -> list[ModelReply]:
        """One reply per body, in order; an Exception in place of a body is that item's error."""
        return self.replies(self.infer(self.prepare(bodies)))

    def prepare(self, bodies: Sequence[bytes | Exception]) -> list[BatchImage]:
        """Each body's crop and facts, or its error reply."""
        if self.device_decode:
            return self._prepare_on_device(bodies)
        items: list[BatchImage] = []
        for body in bodies:
            started = time.perf_counter()
            try:
                if isinstance(body, Exception):
                    raise body
                header = read_header(body, self.limits)
                tensor = self.transform(decode_header(header, self.bundle.resize))  # (3, S, S)
                facts = image_facts(header, (time.perf_counter() - started) * 1000.0)
                items.append(BatchImage(tensor=tensor, facts=facts))
            except Exception as exc:  # one image must never fail the batch
                items.append(self._error(exc))
        return items

    def _prepare_on_device(self, bodies: Sequence[bytes | Exception]) -> list[BatchImage]:
        """The batch's JPEGs decoded and cropped on the device in one call, the rest by Pillow."""
        items = [self._error(b) if isinstance(b, Exception) else BatchImage() for b in bodies]
        good = {k: b for k, b in enumerate(bodies) if not isinstance(b, Exception)}
        try:
            decoded = decode_batch(
                list(good.values()), self.device, self.limits, self.bundle.resize
            )
            crop = functools.partial(centre_crop, spec=self.spec)
            for k, image in zip(good, decoded, strict=True):
                if isinstance(image, ImageError):
                    items[k] = self._error(image)
                    continue
                (tensor,) = crop_all([image], crop, self.transform)  # (3, S, S)
                items[k] = BatchImage(
                    tensor=tensor, facts=image_facts(image.header, image.decode_ms)
                )
        except Exception as exc:  # a device failure: every image of the batch gets the error
            for k in good:
                items[k] = self._error(exc)
        return items

    def _error(self, exc: Exception) -> BatchImage:
        """The item of an image that cannot be answered."""
        if isinstance(exc, ImageError):
            return BatchImage(reply=error_reply(self.version, exc.code, str(exc)))
        log.exception("unexpected error decoding an image", exc_info=exc)
        return BatchImage(reply=error_reply(self.version, INTERNAL, repr(exc)))

    def infer(self, items: list[BatchImage]) -> list[BatchImage]:
        """One forward pass over the batch's good images."""
        good = [item for item in items if item.tensor is not None]
        if not good:
            return items
        started = time.perf_counter()
        tensors = [item.tensor for item in good if item.tensor is not None]
        batch = model_input(tensors, self.spec, self.device)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)  # (B, 3, H, W) NHWC
        output = self.predictor.from_logits(self.predictor.logits(batch, self.autocast))
        if output.cells is None:  # __init__ refused scene-only models
            raise TrainingError("the model predicts no cells")
        cells = output.cells.double().cpu().numpy()  # (B, n_fine)
        scenes = {name: p.float().cpu().numpy() for name, p in output.scenes.items()}
        elapsed = (time.perf_counter() - started) * 1000.0
        for k, item in enumerate(good):
            item.result = (cells[k], {name: p[k] for name, p in scenes.items()}, elapsed)
        return items

    def replies(self, items: list[BatchImage]) -> list[ModelReply]:
        """One reply per item, in order."""
        fine = self.bundle.partitions[-1]
        replies = []
        for item in items:
            if item.reply is not None:
                replies.append(item.reply)
                continue
            if item.result is None:  # a good image the model was not run on: a bug
                replies.append(error_reply(self.version, INTERNAL, "no result for this image"))
                continue
            cells, scenes, elapsed = item.result
            replies.append(
                prediction_reply(
                    self.version,
                    fine,
                    cells,
                    scenes,
                    self.names,
                    item.facts,
                    elapsed,
                    self.reply_settings,
                )
            )
        return replies
