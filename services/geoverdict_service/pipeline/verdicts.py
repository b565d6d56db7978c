"""Each answered record's verdict, built from its checked prediction and its event's claims by
the service's one verdict function (verdicts.build_verdict, which `geoverdict locate` calls too),
and encoded for Kafka. A verdict that cannot be built fails its record, never the batch."""

from __future__ import annotations

import time
from functools import partial

import orjson

from geoverdict_common.contract_types import Location
from geoverdict_service.cache import RecentPredictions, cache_key
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

    def _build(self, item: Item) -> None:
        if item.event is None or item.prediction is None:
            raise ServiceError("verdict without an event and a prediction")  # a bug, not input
        key = cache_key(item.prediction["model_version"], item.sha256)
        location = self._locations.get(key)
        if location is None:
            location = location_of(item.prediction, self._policy, self._places)
            self._locations.put(key, location)
        item.verdict = build_verdict(
            item.event,
            item.prediction,
            self._policy,
            self._places,
            cache_hit=item.cache_hit,
            image_sha256=item.sha256,
            timings_ms=item.timings_ms,
            location=location,
        )
        item.key = item.event.id.encode()
        item.payload = orjson.dumps(item.verdict)
