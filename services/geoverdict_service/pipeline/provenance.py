"""Each photo's provenance, before the model is asked: its fingerprint (kept by SHA-256, so the
same bytes are decoded once), its Content Credentials, its capture time and its earlier
appearances in the near-duplicate index; after the answers are out, its appearance recorded.

None of it can cost a record: a photo the consumer cannot decode has no fingerprint (the model
server judges the image), a hostile manifest is `invalid`, Redis down marks the index
`unavailable`. Sightings are recorded once per event id, so a batch replayed after an aborted
transaction neither counts twice nor finds itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np

from geoverdict_service.cache import RecentPredictions, cache_key
from geoverdict_service.events import Claim
from geoverdict_service.exceptions import ProvenanceError
from geoverdict_service.metrics import Metrics
from geoverdict_service.pipeline.items import Item, guard
from geoverdict_service.pipeline.parts import Cache
from geoverdict_service.provenance.capture import CaptureTime, exif_capture_time
from geoverdict_service.provenance.credentials import ABSENT, CredentialReader, Credentials
from geoverdict_service.provenance.fingerprints import VERSION as FINGERPRINT_VERSION
from geoverdict_service.provenance.fingerprints import Fingerprint, fingerprint
from geoverdict_service.provenance.index import (
    Match,
    NearDuplicateIndex,
    Sighting,
    as_array,
    distances,
)
from geoverdict_service.provenance.report import IndexState, ProvenancePolicy, provenance_report
from geoverdict_service.verdicts import coarse_claim

if TYPE_CHECKING:
    from geoverdict_service.settings import ServiceSettings

log = logging.getLogger(__name__)

Owner = TypeVar("Owner")

FINGERPRINT_PREFIX = "geoverdict:fingerprint"


def fingerprint_key(image_sha256: str) -> str:
    """Redis key of the fingerprint of one image's bytes, by this code's fingerprint version."""
    return f"{FINGERPRINT_PREFIX}:v{FINGERPRINT_VERSION}:{image_sha256}"


class CredentialReading(Protocol):
    """What the stage uses of provenance.credentials.CredentialReader."""

    def read(self, image: bytes, mime: str | None = None) -> Credentials: ...
    def close(self) -> None: ...


@dataclass
class Examined:
    """What the stage learned of one item's photo."""

    fingerprint: Fingerprint | None = None
    credentials: Credentials = ABSENT
    capture: CaptureTime | None = None
    match: Match | None = None
    index: IndexState = "disabled"
    sighting: Sighting | None = None


@dataclass(frozen=True)
class SightingRules:
    """How the stage matches and reuses (from ProvenanceSettings)."""

    policy: ProvenancePolicy
    max_distance: int
    reuse_max_distance: int
    local_entries: int = 2048
    enabled: bool = True  # off: no fingerprint, index or C2PA (an operator's choice)


class BatchPhotos(Generic[Owner]):
    """The indexed hashes of photos seen so far that the index does not hold (a batch's: a
    repost may come in the same poll as its original; `locate`'s photos). One vectorised
    comparison per photo."""

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._owners: list[Owner] = []  # whose each hash is

    def add(self, owner: Owner, fp: Fingerprint) -> None:
        """Keep this photo's indexed hashes (usable fingerprints only)."""
        if fp.usable:
            self._hashes += fp.hashes
            self._owners += [owner] * len(fp.hashes)

    def nearest(
        self, fp: Fingerprint, skip: Callable[[Owner], bool] = lambda _: False
    ) -> tuple[int, Owner] | None:
        """The nearest photo kept, but those `skip` says, and its distance (any query hash
        against any indexed one); None when there is none."""
        if not self._hashes:
            return None
        d = distances(as_array(fp.queries()), as_array(self._hashes)).min(axis=0)  # (hashes,)
        for k in np.argsort(d, kind="stable"):
            owner = self._owners[int(k)]
            if not skip(owner):
                return int(d[k]), owner
        return None


def sighting_rules(settings: ServiceSettings) -> SightingRules:
    """The stage's rules from the consumer's settings."""
    group = settings.provenance
    return SightingRules(
        policy=group.policy(settings.min_precision_km),
        max_distance=group.max_distance,
        reuse_max_distance=group.reuse_max_distance,
        local_entries=settings.cache_local_entries,
        enabled=group.enabled,
    )


def posted_at(item: Item) -> datetime:
    """The event's time, or when Kafka took the record."""
    if item.event is not None and item.event.time is not None:
        return item.event.time
    return datetime.fromtimestamp(item.record.timestamp / 1000, UTC)


class Sightings:
    """Fingerprints, credentials, capture times and the near-duplicate index, for a batch."""

    def __init__(
        self,
        rules: SightingRules,
        metrics: Metrics,
        *,
        index: NearDuplicateIndex | None,
        reader: CredentialReading,
        cache: Cache,
        fingerprinter: Callable[[bytes], Fingerprint] = fingerprint,
    ) -> None:
        self._rules = rules
        self._metrics = metrics
        self._index = index
        self._reader = reader
        self._cache = cache
        self._fingerprinter = fingerprinter
        self._fingerprints: RecentPredictions[Fingerprint] = RecentPredictions(rules.local_entries)
        # What the same bytes' credentials and EXIF said (a popular photo is validated once).
        self._read_before: RecentPredictions[tuple[Credentials, CaptureTime | None]] = (
            RecentPredictions(rules.local_entries)
        )
        # The photo (id, distance) the same bytes were found as or recorded to: an exact repost
        # reads its photo directly instead of probing the buckets.
        self._photo_of: RecentPredictions[tuple[str, int]] = RecentPredictions(rules.local_entries)
        self._examined: dict[int, Examined] = {}

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, metrics: Metrics, cache: Cache, redis_url: str | None
    ) -> Sightings:
        """The real parts: the index in the cache's Redis (none without one), a C2PA reader."""
        group = settings.provenance
        index = None
        if group.enabled and redis_url:
            index = NearDuplicateIndex.from_url(
                redis_url, group.index_settings(), timeout_s=settings.redis_timeout_s
            )
        reader = CredentialReader(
            timeout_s=group.c2pa_timeout_s,
            max_manifest_bytes=group.c2pa_max_manifest_bytes,
            trust_anchors=group.c2pa_trust_anchors,
        )
        return cls(sighting_rules(settings), metrics, index=index, reader=reader, cache=cache)

    def close(self) -> None:
        """Stop the C2PA worker, close the index's connections."""
        self._reader.close()
        if self._index is not None:
            self._index.close()

    # -- before the model ------------------------------------------------------------------------
    def examine(self, items: list[Item]) -> None:
        """Each photo's fingerprint, credentials, capture time and earlier appearances."""
        t0 = time.perf_counter()
        self._examined = {}
        photos = [i for i in items if i.image is not None and i.failure is None]
        for item in photos:
            self._examined[id(item)] = Examined()
        if not self._rules.enabled:
            return
        self._fingerprint(photos)
        for item in photos:
            guard(item, "provenance", partial(self._read, item))
        self._find(photos)
        elapsed = time.perf_counter() - t0
        self._metrics.provenance_seconds.observe(elapsed)
        for item in photos:
            item.timings_ms["provenance"] = round(elapsed * 1000, 3)

    def reusable(self, items: list[Item]) -> list[tuple[Item, str]]:
        """The items a near-duplicate's prediction may answer: matched within the reuse
        distance, with the cache key of that prediction."""
        out = []
        for item in items:
            seen = self._examined.get(id(item))
            if seen is None or seen.match is None or seen.match.prediction_key is None:
                continue
            if seen.match.distance <= self._rules.reuse_max_distance:
                out.append((item, seen.match.prediction_key))
        return out

    def report(self, items: list[Item]) -> None:
        """Each examined item's `provenance`, for its verdict."""
        for item in items:
            seen = self._examined.get(id(item))
            if seen is None or item.event is None:
                continue
            claim = item.event.claim
            floored = coarse_claim(claim, self._rules.policy.min_precision_km) if claim else None
            item.provenance = provenance_report(
                fingerprint=seen.fingerprint,
                index=seen.index,
                match=seen.match,
                credentials=seen.credentials,
                exif_capture=seen.capture,
                claim=floored,
                posted_at=posted_at(item),
                policy=self._rules.policy,
            )

    # -- after the answers are out ---------------------------------------------------------------
    def record(self, items: list[Item]) -> None:
        """Record each answered photo's appearance (verdicts only, once per event id)."""
        if self._index is None:
            return
        entries: list[tuple[Fingerprint, Sighting, Match | None]] = []
        recorded: list[Item] = []
        for item in items:
            seen = self._examined.get(id(item))
            if item.payload is None or seen is None or seen.fingerprint is None:
                continue
            if not seen.fingerprint.usable or seen.index != "ok":
                continue
            # Now with the prediction it was answered with (a near-duplicate may reuse it). A
            # match within the batch has no photo id yet: the index finds it among the photos
            # this call creates.
            match = seen.match if seen.match is not None and seen.match.photo_id else None
            entries.append((seen.fingerprint, self._sighting(item), match))
            recorded.append(item)
        try:
            photos = self._index.record_many(entries)
        except ProvenanceError as exc:
            log.warning("the near-duplicate index failed while recording: %s", exc)
            return
        for item, photo in zip(recorded, photos, strict=True):
            found = self._examined[id(item)].match
            if photo is not None and self._photo_of.get(item.sha256) is None:
                self._photo_of.put(item.sha256, (photo, found.distance if found else 0))

    # -- the parts -------------------------------------------------------------------------------
    def _fingerprint(self, photos: list[Item]) -> None:
        """Fingerprints by SHA-256: this process's, then Redis's, then computed (and stored)."""
        todo = []
        for item in photos:
            fp = self._fingerprints.get(item.sha256)
            if fp is None:
                todo.append(item)
            else:
                self._examined[id(item)].fingerprint = fp
        stored = self._stored(todo)
        fresh: dict[str, Fingerprint] = {}
        for item, found in zip(todo, stored, strict=True):
            fp = found or fresh.get(item.sha256)
            if fp is None and item.image is not None:
                try:
                    fp = self._fingerprinter(item.image)
                except ProvenanceError as exc:
                    log.debug("no fingerprint for %s: %s", item.event_id, exc)
                    continue
                fresh[item.sha256] = fp
            if fp is not None:
                self._examined[id(item)].fingerprint = fp
                self._fingerprints.put(item.sha256, fp)
        if fresh and self._cache.enabled:
            try:
                self._cache.set_many(
                    {fingerprint_key(sha): fp.to_json() for sha, fp in fresh.items()}
                )
            except Exception:  # the cache fails open
                log.exception("the cache failed while storing fingerprints")

    def _stored(self, items: Sequence[Item]) -> list[Fingerprint | None]:
        """Fingerprints other consumers stored for these bytes (one round trip)."""
        if not items or not self._cache.enabled:
            return [None] * len(items)
        try:
            entries = self._cache.get_many([fingerprint_key(i.sha256) for i in items])
        except Exception:  # the cache fails open
            log.exception("the cache failed while reading fingerprints")
            return [None] * len(items)
        out: list[Fingerprint | None] = []
        for entry in entries:
            try:
                out.append(Fingerprint.from_json(entry) if entry is not None else None)
            except ValueError:  # corrupt or forged: computed again
                out.append(None)
        return out

    def _read(self, item: Item) -> None:
        """Content Credentials and the EXIF capture time, read once per SHA-256 (the reader's
        pre-scan answers `absent` without its worker when there is no manifest)."""
        if item.image is None:
            return
        seen = self._examined[id(item)]
        known = self._read_before.get(item.sha256)
        if known is None:
            known = (self._reader.read(item.image), exif_capture_time(item.image))
            self._read_before.put(item.sha256, known)
        seen.credentials, seen.capture = known

    def _find(self, photos: list[Item]) -> None:
        """Earlier appearances: in the index (one lookup for the batch), then among the batch's
        earlier items (not indexed yet)."""
        usable = []
        for item in photos:
            seen = self._examined[id(item)]
            if seen.fingerprint is None or not seen.fingerprint.usable:
                seen.index = "unusable"
                self._metrics.near_duplicates.labels(result="unusable").inc()
            elif self._index is None:
                seen.index = "disabled"
            else:
                usable.append(item)
        if not usable or self._index is None:
            return
        try:
            matches = self._index.find_many(
                [(i.event_id or "", self._examined[id(i)].fingerprint) for i in usable],  # type: ignore[misc]
                known=[self._photo_of.get(i.sha256) for i in usable],
            )
        except ProvenanceError as exc:
            log.warning("the near-duplicate index is unavailable: %s", exc)
            for item in usable:
                self._examined[id(item)].index = "unavailable"
            self._metrics.near_duplicates.labels(result="unavailable").inc(len(usable))
            return
        earlier: BatchPhotos[Item] = BatchPhotos()
        for item, match in zip(usable, matches, strict=True):
            seen = self._examined[id(item)]
            seen.index, seen.match = "ok", match
            if match is not None and match.photo_id:
                self._photo_of.put(item.sha256, (match.photo_id, match.distance))
            elif match is None:
                self._match_in_batch(item, earlier)
            seen.sighting = self._sighting(item)
            if seen.fingerprint is not None:
                earlier.add(item, seen.fingerprint)
            result = "match" if seen.match is not None else "none"
            self._metrics.near_duplicates.labels(result=result).inc()

    def _match_in_batch(self, item: Item, earlier: BatchPhotos[Item]) -> None:
        """The nearest earlier item of this batch within the match distance, as a match."""
        seen = self._examined[id(item)]
        if seen.fingerprint is None:
            return
        # the same event twice (a producer's retry) is no repost
        best = earlier.nearest(seen.fingerprint, lambda other: other.event_id == item.event_id)
        if best is None or best[0] > self._rules.max_distance:
            return
        d, other = best
        theirs = self._examined[id(other)]
        if theirs.match is not None:  # the same photo as theirs: one more sighting of it
            seen.match = replace(
                theirs.match,
                distance=d,
                times_seen=theirs.match.times_seen + 1,
                claims=self._claims_of(other) + theirs.match.claims,
            )
            return
        if theirs.sighting is None:
            return
        seen.match = Match(
            photo_id="",  # not indexed yet: recorded with its first item (record)
            distance=d,
            first=theirs.sighting,
            times_seen=1,
            claims=self._claims_of(other),
            prediction_key=None,
        )

    def _floored(self, item: Item) -> Claim | None:
        """The item's claim, no finer than the privacy floor (as the index keeps it)."""
        claim = item.event.claim if item.event is not None else None
        return coarse_claim(claim, self._rules.policy.min_precision_km) if claim else None

    def _claims_of(self, item: Item) -> tuple[tuple[float, float, datetime], ...]:
        """An item's claim as an earlier claim."""
        claim = self._floored(item)
        return ((claim.lat, claim.lon, posted_at(item)),) if claim else ()

    def _sighting(self, item: Item) -> Sighting:
        """This item's appearance as the index keeps it: the claim floored."""
        event = item.event
        claim = self._floored(item)
        key = (
            cache_key(item.prediction["model_version"], item.sha256)
            if item.prediction is not None
            else None
        )
        return Sighting(
            event_id=item.event_id or "",
            post_id=event.post_id if event else "",
            source=event.source if event else "",
            seen_at=posted_at(item),
            claim=(claim.lat, claim.lon) if claim else None,
            prediction_key=key,
        )
