"""The model's answers for the cache's misses, each distinct image asked once.

A bad image (the model server's per-image error) is that record's dead letter; an unavailable
model server is nobody's fault: the record is left unanswered, and the consumer pauses.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from geoverdict_common.contract_types import Prediction
from geoverdict_common.exceptions import ContractError
from geoverdict_service.exceptions import (
    BadEventError,
    BadImageError,
    InferenceUnavailableError,
    InternalError,
)
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.parts import Inference
from geoverdict_service.verdicts import checked_reply

log = logging.getLogger(__name__)


class Predictions:
    """Asks the model server for what the cache did not answer; knows the served version."""

    def __init__(self, inference: Inference, metrics: Metrics, min_precision_km: float) -> None:
        self._inference = inference
        self._metrics = metrics
        self._min_precision_km = min_precision_km
        self.model_version: str | None = None  # the latest the model server answered with

    def learn_model_version(self, version: str | None) -> None:
        """Note the version a reply came from (the cache's keys and the model metric)."""
        if version and version != self.model_version:
            if self.model_version is not None:
                log.info("model version changed: %s -> %s", self.model_version, version)
            self.model_version = version
            self._metrics.model.info({"version": version})

    def predict(self, items: list[Item]) -> bool:
        """Predict every miss (each distinct image once, all in one call: the client batches
        them into requests); True when the model server is unavailable."""
        misses = [i for i in items if i.needs_inference]
        images = {item.sha256: item.image for item in misses if item.image is not None}
        futures: dict[str, Future[dict[str, Any]]] = {}
        try:
            futures = dict(
                zip(images, self._inference.submit_many(list(images.values())), strict=True)
            )
        except Exception as exc:  # a bug in the client: these records' dead letters
            log.exception("the inference client failed to take the batch")
            for item in misses:
                item.fail(InternalError("inference", exc))
        self._metrics.inference_requests.inc(len(futures))
        self._metrics.in_flight.set(len(futures))
        results: dict[str, Prediction | BadEventError] = {}
        unavailable = False
        for sha, future in futures.items():
            try:
                # Cached and used as coarse as the floor: no exact GPS kept for the cache's TTL.
                results[sha] = checked_reply(future.result(), self._min_precision_km)
            except ContractError as exc:  # what the server sent breaks the contract
                results[sha] = BadEventError(str(exc), exc.reason)
            except BadEventError as exc:
                results[sha] = exc
            except InferenceUnavailableError as exc:
                if not unavailable:
                    log.warning("model server unavailable: %s", exc)
                unavailable = True
            except Exception as exc:  # a bug in the client: this image's dead letter
                log.exception("unexpected error from the inference client")
                results[sha] = InternalError("inference", exc)
            finally:
                self._metrics.in_flight.dec()
        for item in misses:
            result = results.get(item.sha256)
            if isinstance(result, BadEventError):
                item.fail(result)
                if isinstance(result, BadImageError):
                    self.learn_model_version(result.model_version)
            elif result is not None:
                item.prediction = result
                item.timings_ms["model"] = result.get("timings_ms", {})
                self.learn_model_version(result["model_version"])
        return unavailable
