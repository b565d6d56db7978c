"""The wire contracts typed for the code that reads them: one TypedDict per JSON Schema object.

The JSON Schemas in schemas/ are what producers and the model server are held to;
these types let mypy check the readers (`verdict["scene"]["s3"]["label"]`). A dict becomes one
of these only after contract.check passed (contract.checked_prediction), never by a bare cast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # annotations only: the Triton image's Python 3.10 has no typing.NotRequired
    from typing_extensions import NotRequired


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
    cache_hit: bool
    timings_ms: dict[str, Any]
