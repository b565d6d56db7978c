"""The two-level cache in front of the model: predictions kept in this process, then Redis.

An entry is used only when it meets the prediction contract and is of the model version now
served; anything else is a miss. Both levels fail open: a cache that raises is a miss, never a
lost record.
"""

from __future__ import annotations

import logging
import time

from geoverdict_common import contract
from geoverdict_common.contract_types import Prediction
from geoverdict_common.exceptions import ContractError
from geoverdict_service.cache import RecentPredictions, cache_key
from geoverdict_service.exceptions import BadEventError
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.items import Item
from geoverdict_service.pipeline.parts import Cache

log = logging.getLogger(__name__)


def _sha(key: str) -> str:
    """The image hash a cache key ends with."""
    return key.rpartition(":")[2]


class Lookup:
    """Answers items from the cache before the model is asked; stores the model's answers."""

    def __init__(self, cache: Cache, metrics: Metrics, local_entries: int) -> None:
        self._cache = cache
        self._metrics = metrics
        self._recent: RecentPredictions[Prediction] = RecentPredictions(
            local_entries if cache.enabled else 0
        )

    def find(self, items: list[Item], model_version: str | None) -> None:
        """Give each item that needs an inference its cached prediction, where there is one."""
        wanted = [i for i in items if i.needs_inference]
        if not self._cache.enabled:
            return
        if not wanted or model_version is None:
            self._metrics.cache_requests.labels(result="miss").inc(len(wanted))
            return
        t0 = time.perf_counter()
        found = self._predictions([cache_key(model_version, i.sha256) for i in wanted])
        for item, prediction in zip(wanted, found, strict=True):
            if prediction is not None:
                item.prediction, item.cache_hit = prediction, "exact"
        elapsed = round((time.perf_counter() - t0) * 1000, 3)
        hits = sum(1 for i in wanted if i.cache_hit)
        for item in wanted:
            item.timings_ms["cache"] = elapsed
        self._metrics.cache_requests.labels(result="hit").inc(hits)
        self._metrics.cache_requests.labels(result="miss").inc(len(wanted) - hits)

    def reuse(self, wanted: list[tuple[Item, str]], model_version: str | None) -> None:
        """Answer near-duplicate reposts with the prediction their photo was answered with
        (`wanted`: each item and that prediction's cache key), where it is still cached and of
        the model version now served."""
        if not self._cache.enabled or model_version is None:
            return
        wanted = [(i, key) for i, key in wanted if i.needs_inference]
        current = [(i, key) for i, key in wanted if key == cache_key(model_version, _sha(key))]
        if not current:
            return
        found = self._predictions([key for _, key in current])
        reused = 0
        for (item, _), prediction in zip(current, found, strict=True):
            if prediction is not None:
                item.prediction, item.cache_hit = prediction, "near_duplicate"
                reused += 1
        # These items were counted as misses by find(): a miss turned into a reuse.
        self._metrics.cache_requests.labels(result="near_duplicate").inc(reused)
        self._metrics.cache_requests.labels(result="miss").inc(-reused) if False else None

    def _predictions(self, keys: list[str]) -> list[Prediction | None]:
        """The checked predictions under `keys`: those kept in this process first, then Redis
        (one round trip); a corrupt, forged or missing entry is None."""
        out: list[Prediction | None] = [self._recent.get(key) for key in keys]
        remote = [k for k, prediction in enumerate(out) if prediction is None]
        try:
            entries = self._cache.get_many([keys[k] for k in remote]) if remote else []
        except Exception:  # the cache fails open, whatever it raises
            log.exception("the cache failed unexpectedly: every lookup is a miss")
            self._metrics.cache_errors.labels(operation="get").inc()
            entries = [None] * len(remote)
        for k, entry in zip(remote, entries, strict=True):
            if entry is None:
                continue
            try:
                prediction = contract.checked_prediction(entry)
                if cache_key(prediction["model_version"], _sha(keys[k])) != keys[k]:
                    raise BadEventError("cache entry of another model version", "invalid")
            except (BadEventError, ContractError):
                # A corrupt or forged entry is a miss; the model's answer overwrites it.
                self._metrics.cache_errors.labels(operation="invalid").inc()
                continue
            out[k] = prediction
            self._recent.put(keys[k], prediction)
        return out

    def store(self, items: list[Item]) -> None:
        """Keep the model's fresh answers in both levels (not what came from the cache)."""
        fresh = {
            cache_key(i.prediction["model_version"], i.sha256): i.prediction
            for i in items
            if i.prediction is not None and not i.cache_hit and i.failure is None
        }
        for key, prediction in fresh.items():
            self._recent.put(key, prediction)
        try:
            self._cache.set_many(dict(fresh))
        except Exception:  # the cache fails open, whatever it raises
            log.exception("the cache failed unexpectedly while storing")
            self._metrics.cache_errors.labels(operation="set").inc()
