"""Each answered record's verdict, built from its checked prediction and its event's claims,
and encoded for Kafka. Verdicts.verdict is the one place where a prediction becomes a verdict
(verdicts.build_verdict), for the stream and for `geoverdict locate` alike. A verdict that
cannot be built fails its record, never the batch."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import orjson

from geoverdict_common.contract_types import CacheHit, Location, Prediction, Provenance, Verdict
from geoverdict_service.cache import RecentPredictions, cache_key
from geoverdict_service.events import Post
from geoverdict_service.exceptions import ServiceError
from geoverdict_service.geo import PlaceNames
from geoverdict_service.pipeline.items import Item, guard
from geoverdict_service.verdicts import VerdictPolicy, build_verdict, location_of


class Verdicts:
    """Builds and encodes the verdicts of the predicted items; keeps the locations of the photos
    it answered lately (the service's only cache of locations)."""

    def __init__(
        self, policy: VerdictPolicy, places: PlaceNames | None, local_entries: int
    ) -> None:
        self._policy = policy
        self._places = places
        # A photo answered again has the same location: kept, as its checked prediction is.
        self._locations: RecentPredictions[Location] = RecentPredictions(local_entries)

    def build(self, items: list[Item], started: float) -> None:
        """Each predicted item's verdict, encoded, its total time counted from `started`
        (perf_counter); a verdict that cannot be built fails its item."""
        for item in items:
            if item.prediction is not None and item.failure is None:
                item.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
                guard(item, "verdict", partial(self._build, item))

    def verdict(
        self,
        post: Post,
        prediction: Prediction,
        *,
        cache_hit: CacheHit,
        image_sha256: str,
        timings_ms: dict[str, Any],
        provenance: Provenance,
    ) -> Verdict:
        """The verdict of a post from its photo's checked prediction: the one place where a
        prediction becomes a verdict, for the stream (build) and for `geoverdict locate`."""
        key = cache_key(prediction["model_version"], image_sha256)
        location = self._locations.get(key)
        if location is None:
            location = location_of(prediction, self._policy, self._places)
            self._locations.put(key, location)
        return build_verdict(
            post,
            prediction,
            self._policy,
            self._places,
            cache_hit=cache_hit,
            image_sha256=image_sha256,
            timings_ms=timings_ms,
            provenance=provenance,
            location=location,
        )

    def _build(self, item: Item) -> None:
        if item.event is None or item.prediction is None or item.provenance is None:
            raise ServiceError("verdict without an event, a prediction and a provenance")  # a bug
        item.verdict = self.verdict(
            item.event,
            item.prediction,
            cache_hit=item.cache_hit,
            image_sha256=item.sha256,
            timings_ms=item.timings_ms,
            provenance=item.provenance,
        )
        item.key = item.event.id.encode()
        item.payload = orjson.dumps(item.verdict)
