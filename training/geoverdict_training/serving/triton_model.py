"""The Triton Python-backend model: a merged batch of image requests in, one contract reply per
image out, through the same Responder as the TorchServe handler (limits, EXIF orientation,
calibration, hierarchy, replies: none of it written twice).

Triton's dynamic batcher hands `execute` several requests, each a BYTES tensor IMAGE of shape
(n, 1) (one encoded image an element); all their images go through one Responder pass, and
each request gets its REPLY tensor (n, 1) of JSON replies, a bad image's reply being its error
(code and message, as TorchServe's). The model loads the archive of its version folder after
checking it against the SHA256SUMS beside it (geoverdict_modelserver.triton_repository writes
both); the replies' model_version is the archive's, as through TorchServe. On a GPU instance
(instance_group KIND_GPU) the Responder decodes JPEGs on the GPU and runs bf16 channels_last.

Parameters (config.pbtxt): threads (torch threads per CPU instance) and the Responder's
options (max_image_bytes, max_image_pixels, max_aspect_ratio, decode, precision).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoverdict_common import archives
from geoverdict_common.triton_names import ARCHIVE, INPUT, OUTPUT
from geoverdict_training.exceptions import ConfigError, TrainingError
from geoverdict_training.serving.responder import Responder, ResponderOptions

log = logging.getLogger(__name__)


def _pb_utils() -> Any:
    """Triton's module, which exists only inside its Python stub."""
    import triton_python_backend_utils as pb_utils  # noqa: PLC0415

    return pb_utils


def load_responder(args: dict[str, Any]) -> Responder:
    """The Responder of a model instance, from the backend's `args`."""
    config = json.loads(args["model_config"])
    parameters = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
    folder = Path(args["model_repository"]) / str(args["model_version"])
    refused = archives.problems(folder, [ARCHIVE])
    if refused:
        raise TrainingError(f"refusing to load {folder / ARCHIVE}: {'; '.join(refused)}")
    gpu = args.get("model_instance_kind") == "GPU" and torch.cuda.is_available()
    device = torch.device(f"cuda:{args.get('model_instance_device_id', 0)}" if gpu else "cpu")
    try:
        threads = int(parameters.pop("threads", "1"))
    except ValueError as exc:
        raise ConfigError(f"parameter 'threads' must be an integer: {exc}") from exc
    if not gpu:
        torch.set_num_threads(max(1, threads))
    options = ResponderOptions.from_mapping(parameters)
    return Responder.from_archive(folder / ARCHIVE, device, options)


def answer(responder: Responder, requests: list[list[bytes]]) -> list[list[bytes]]:
    """Each request's images answered in one Responder pass: JSON replies, request by request."""
    bodies: list[bytes | Exception] = [image for images in requests for image in images]
    replies = [json.dumps(r, separators=(",", ":")).encode() for r in responder.answer(bodies)]
    out, start = [], 0
    for images in requests:
        out.append(replies[start : start + len(images)])
        start += len(images)
    return out


class TritonPythonModel:
    """What Triton's Python backend instantiates (one per model instance)."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the version folder's archive on this instance's device."""
        self.responder = load_responder(args)
        log.info("geoverdict Triton model %s ready", self.responder.version)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order."""
        pb_utils = _pb_utils()
        images = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, INPUT).as_numpy()  # (n, 1)
            images.append([bytes(element) for element in tensor.reshape(-1)])
        responses = []
        for replies in answer(self.responder, images):
            reply = np.array(replies, dtype=np.object_).reshape(-1, 1)  # (n, 1)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT, reply)]))
        return responses
