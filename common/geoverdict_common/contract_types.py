"""The wire contracts typed for the code that reads them: one TypedDict per JSON Schema object.

The JSON Schemas in schemas/ are what producers and the model server are held to;
these types let mypy check the readers (`verdict["scene"]["s3"]["label"]`). A dict becomes one
of these only after contract.check passed (contract.checked_prediction), never by a bare cast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:  # annotations only: the Triton image's Python 3.10 has no typing.NotRequired
    from typing_extensions import NotRequired


# A verdict's cache_hit: false (the model answered), or which kind of cache answered.
CacheHit = Literal[False, "exact", "near_duplicate"]


class Point(TypedDict):
    """A position in degrees."""

    lat: float
    lon: float


class Cell(TypedDict):
    """One S2 cell of the answer: its token and level, its point, its probability."""

    token: str
    level: int
    lat: float
    lon: float
    probability: float
    radius_km: NotRequired[float]  # from the cell's point to its farthest corner


class ScoredLabel(TypedDict):
    """A scene label and its probability."""

    label: str
    index: NotRequired[int]
    probability: float


class Scene(TypedDict, total=False):
    """Scene labels: the top S3 class, the top S16 and S365 classes."""

    s3: ScoredLabel
    s16: list[ScoredLabel]
    s365: list[ScoredLabel]


class Confidence(TypedDict):
    """How sure the model is: top-1 probability, entropy, radii holding 50 % / 90 %."""

    top1: float
    entropy: float
    radius_50_km: float
    radius_90_km: float


class ImageInfo(TypedDict):
    """What the handler learned of the image."""

    width: int
    height: int
    format: NotRequired[str | None]


class Prediction(TypedDict):
    """The model server's answer for one image (prediction.schema.json, prediction)."""

    model_version: str
    cells: list[Cell]
    cells_mass: float
    best_guess: Cell
    scene: Scene
    confidence: Confidence
    image: ImageInfo
    exif_location: NotRequired[Point | None]
    timings_ms: dict[str, float]


class Place(TypedDict):
    """The nearest known place of a point (offline reverse geocoding)."""

    name: str
    admin1: str
    country_code: str


class BestGuess(Cell):
    """The best guess: a point chosen from the whole distribution by the model's rule, the cell
    it lies in (token, level, that cell's probability), how far that cell reaches from the point
    (radius_km), and the name of the nearest place."""

    place: Place | None


class Location(TypedDict):
    """Where the photo was likely taken (verdict.schema.json, location)."""

    cells: list[Cell]
    best_guess: BestGuess
    confidence: Confidence
    precision_km: float
    precision_floor_km: float


class Consistency(TypedDict):
    """How one claimed location agrees with the prediction."""

    claim_source: str
    lat: float
    lon: float
    distance_km: float
    mass_within_25_km: float
    mass_within_200_km: float
    probability_within_threshold: float
    location_mismatch: bool
    threshold_km: float
    max_mass: float


class Verdict(TypedDict):
    """The answer to one image event (verdict.schema.json)."""

    id: str
    post_id: str
    source: str
    model_version: str
    produced_at: str
    image_sha256: str
    location: Location
    scene: Scene
    consistency: list[Consistency]
    cache_hit: CacheHit
    provenance: Provenance
    timings_ms: dict[str, Any]


class Fingerprint(TypedDict):
    """The photo's PDQ perceptual hash (hex) and its quality (0-100)."""

    pdq: str
    quality: int


class NearDuplicate(TypedDict):
    """The first known appearance of the photo (or a near-duplicate of it) in the stream."""

    event_id: str
    post_id: str
    source: str
    first_seen: str
    times_seen: int
    distance: int


class EarlierClaim(TypedDict):
    """A place an earlier post of the photo claimed, and how far it is from this one's claim."""

    lat: float
    lon: float
    seen_at: str
    distance_km: float | None


class CaptureLocation(TypedDict):
    """The capture location in the Content Credentials, and its distance from the claim."""

    lat: float
    lon: float
    distance_km: float | None


class ContentCredentials(TypedDict):
    """The photo's C2PA manifest as validated (state, codes, signer, AI generation, place)."""

    state: Literal["absent", "valid", "untrusted", "invalid"]
    codes: list[str]
    reason: str | None
    signer: str | None
    issuer: str | None
    claim_generator: str | None
    signed_at: str | None
    ai_generated: bool
    capture_location: CaptureLocation | None


class Capture(TypedDict):
    """When the photo was taken, by which source, and how long before the post."""

    captured_at: str
    source: Literal["exif", "c2pa"]
    offset_known: bool
    before_post_s: float | None
    before_post: str | None
    check: Literal["plausible", "after_post", "implausible"]


class Provenance(TypedDict):
    """Where the photo has been (verdict.schema.json, $defs/provenance)."""

    index: Literal["ok", "unavailable", "disabled", "unusable"]
    fingerprint: Fingerprint | None
    near_duplicate: NearDuplicate | None
    earlier_claims: list[EarlierClaim]
    recycled_claim: bool
    recycled_claim_km: float
    c2pa: ContentCredentials
    capture: Capture | None
