"""`geoverdict locate PHOTO...`: where each photo was taken, answered in this process, without
Kafka or a model server.

A verdict here is built as the stream builds it: the archive's model answers through the same
Responder as the model handler (limits, EXIF orientation, calibration, hierarchy, reply), and
the reply becomes a verdict by the service's own functions (verdicts.checked_reply, then the
verdict stage's Verdicts.verdict: the contract check, the privacy floor, the claim checks) with
the same settings (`GEOVERDICT_TOP_K`, `GEOVERDICT_MIN_PRECISION_KM`, the mismatch flag's). So a
photo gets the top cells and probabilities here that a verdict from `geoverdict consume` gives
it. A file that cannot be answered (unreadable, not an image, too large, corrupt) gets one line
naming it and why, as the service's dead letter would, and the other photos are still answered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoverdict_common.paths import model_store_dir

if TYPE_CHECKING:
    from geoverdict_common.contract_types import Provenance, Verdict
    from geoverdict_service.geo import PlaceNames
    from geoverdict_service.pipeline.provenance import BatchPhotos
    from geoverdict_service.pipeline.verdicts import Verdicts
    from geoverdict_service.settings import VerdictSettings
    from geoverdict_training.serving.responder import Responder

# The model answers here (torch and the training package's Responder), the verdict is the service's.
REQUIRES = ("torch", "geoverdict_training", "geoverdict_service")

DEFAULT_ARCHIVE = "geoverdict.mar"
BATCH_SIZE = 8  # photos per forward pass
LOCATIONS_KEPT = 1024  # the same photo named twice is located once


class LocateError(Exception):
    """The command cannot run: no model, or settings that do not hold."""


@dataclass(frozen=True)
class Located:
    """One photo's answer: its verdict, or why it has none (the dead letter's reason)."""

    path: Path
    verdict: Verdict | None = None
    reason: str | None = None  # a stable code: unreadable, undecodable, too_large, ...
    message: str | None = None
    duplicate_of: tuple[Path, int] | None = None  # an earlier photo named, and the distance

    def to_json(self) -> dict[str, Any]:
        """One JSON line: `{"photo", "verdict"}` or `{"photo", "error": {"code", "message"}}`."""
        if self.verdict is not None:
            out: dict[str, Any] = {"photo": str(self.path), "verdict": self.verdict}
            if self.duplicate_of is not None:
                earlier, distance = self.duplicate_of
                out["near_duplicate_of"] = {"photo": str(earlier), "distance": distance}
            return out
        return {"photo": str(self.path), "error": {"code": self.reason, "message": self.message}}


def parse_claim(text: str) -> tuple[float, float]:
    """`LAT,LON` in degrees."""
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a claim is LAT,LON in degrees, got {text!r}") from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"latitude in [-90, 90], longitude in [-180, 180]: {text}")
    return lat, lon


def load_responder(archive: Path | None, device: str = "auto") -> Responder:
    """The model of `archive` (default: model_store/geoverdict.mar) on `device`."""
    import torch  # noqa: PLC0415 (the command's import cost, not the CLI's)

    from geoverdict_training.serving.responder import Responder  # noqa: PLC0415

    path = archive if archive is not None else model_store_dir() / DEFAULT_ARCHIVE
    if not path.exists():
        hint = "give --model ARCHIVE.mar" if archive is None else "check the path"
        raise LocateError(f"no model archive at {path}: {hint} (geoverdict export makes one)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Responder.from_archive(path, device)


def locate(
    paths: Sequence[Path],
    responder: Responder,
    settings: VerdictSettings,
    *,
    claim: tuple[float, float] | None = None,
    places: PlaceNames | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Located]:
    """Each photo's verdict or failure, in order, answered `batch_size` photos at a time."""
    from geoverdict_service.pipeline.verdicts import Verdicts  # noqa: PLC0415

    verdicts = Verdicts(settings.policy(), places, LOCATIONS_KEPT)
    history = PhotoHistory(settings)
    try:
        yield from _answers(paths, responder, settings, claim, verdicts, history, batch_size)
    finally:
        history.close()


def _answers(
    paths: Sequence[Path],
    responder: Responder,
    settings: VerdictSettings,
    claim: tuple[float, float] | None,
    verdicts: Verdicts,
    history: PhotoHistory,
    batch_size: int,
) -> Iterator[Located]:
    for start in range(0, len(paths), batch_size):
        batch = list(paths[start : start + batch_size])
        started = time.perf_counter()
        bodies = [_read(path) for path in batch]
        readable = [body for body in bodies if isinstance(body, bytes)]
        replies = iter(responder.answer(readable))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        for path, body in zip(batch, bodies, strict=True):
            if isinstance(body, bytes):
                reply = next(replies)
                yield _verdict(path, body, reply, settings, claim, verdicts, elapsed_ms, history)
            else:
                yield Located(path, reason="unreadable", message=f"unreadable: {body}")


# A folder named on the command line stands for its images (by suffix, not recursive).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".heic", ".heif", ".avif"}
)


def expand_folders(paths: Sequence[Path]) -> list[Path]:
    """Each folder replaced by its image files, sorted by name; files as they are."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            out.append(path)
    return out


def _read(path: Path) -> bytes | str:
    """The file's bytes, or why there are none."""
    if path.is_dir():
        return f"{path} is a folder (only its image files are read: see --help)"
    try:
        return path.read_bytes()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"


def _verdict(
    path: Path,
    body: bytes,
    reply: dict[str, Any],
    settings: VerdictSettings,
    claim: tuple[float, float] | None,
    verdicts: Verdicts,
    elapsed_ms: float,
    history: PhotoHistory,
) -> Located:
    """The service's path from a model reply to a verdict: contract check, privacy floor,
    verdict; the post is the photo (a fresh id, as each event has its own) and its claim."""
    from geoverdict_common.exceptions import ContractError  # noqa: PLC0415
    from geoverdict_service.events import Claim, Post  # noqa: PLC0415
    from geoverdict_service.verdicts import checked_reply  # noqa: PLC0415

    error = reply.get("error")
    if error:
        # The message starts with the code, as the dead letter's does: "undecodable: ..."
        return Located(path, reason=str(error.get("code")), message=str(error.get("message")))
    try:
        prediction = checked_reply(reply, settings.min_precision_km)
    except ContractError as exc:
        return Located(path, reason=exc.reason, message=str(exc))
    post = Post(
        id=str(uuid.uuid4()),
        source="geoverdict/locate",
        post_id=path.name,
        claim=Claim(claim[0], claim[1], "event") if claim is not None else None,
    )
    provenance, duplicate_of = history.provenance(path, body, post.claim)
    verdict = verdicts.verdict(
        post,
        prediction,
        cache_hit=False,
        image_sha256=hashlib.sha256(body).hexdigest(),
        timings_ms={"model": prediction.get("timings_ms", {}), "total": round(elapsed_ms, 3)},
        provenance=provenance,
    )
    return Located(path, verdict=verdict, duplicate_of=duplicate_of)


class PhotoHistory:
    """The provenance `locate` can tell without the stream's index: Content Credentials, the
    capture time, and which photos named before are near-duplicates of this one."""

    def __init__(self, settings: VerdictSettings) -> None:
        from geoverdict_service.pipeline.provenance import BatchPhotos  # noqa: PLC0415
        from geoverdict_service.provenance.credentials import CredentialReader  # noqa: PLC0415
        from geoverdict_service.settings import ProvenanceSettings  # noqa: PLC0415

        self._group = ProvenanceSettings()
        self._floor = settings.min_precision_km
        self._reader = CredentialReader(
            timeout_s=self._group.c2pa_timeout_s,
            max_manifest_bytes=self._group.c2pa_max_manifest_bytes,
            trust_anchors=self._group.c2pa_trust_anchors,
        )
        self._seen: BatchPhotos[Path] = BatchPhotos()

    def provenance(
        self, path: Path, body: bytes, claim: Any
    ) -> tuple[Provenance, tuple[Path, int] | None]:
        """This photo's provenance (index "disabled": the stream's index is not asked) and the
        nearest earlier photo within the match distance."""
        from geoverdict_service.exceptions import ProvenanceError  # noqa: PLC0415
        from geoverdict_service.provenance.capture import exif_capture_time  # noqa: PLC0415
        from geoverdict_service.provenance.fingerprints import fingerprint  # noqa: PLC0415
        from geoverdict_service.provenance.report import provenance_report  # noqa: PLC0415
        from geoverdict_service.verdicts import coarse_claim  # noqa: PLC0415

        try:
            fp = fingerprint(body)
        except ProvenanceError:
            fp = None
        duplicate_of = None
        if fp is not None and fp.usable:
            nearest = self._seen.nearest(fp)
            if nearest is not None and nearest[0] <= self._group.max_distance:
                duplicate_of = (nearest[1], nearest[0])
            self._seen.add(path, fp)
        credentials = self._reader.read(body)  # `absent` at once without a manifest
        provenance = provenance_report(
            fingerprint=fp,
            index="disabled" if fp is not None and fp.usable else "unusable",
            match=None,
            credentials=credentials,
            exif_capture=exif_capture_time(body),
            claim=coarse_claim(claim, self._floor) if claim is not None else None,
            posted_at=None,
            policy=self._group.policy(self._floor),
        )
        return provenance, duplicate_of

    def close(self) -> None:
        """Stop the C2PA worker."""
        self._reader.close()


# -- the command -----------------------------------------------------------------------------
USER_ERRORS: tuple[type[Exception], ...] = (LocateError,)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `locate` command."""
    parser = subparsers.add_parser(
        "locate",
        help="where was this photo taken? a verdict for local photos, no Kafka or server",
        description="Answer local photos with the verdict the stream would give them (best "
        "guess, top cells, confidence radii, scene, and the check of a claimed place), computed "
        "in this process by the model archive. The verdict settings (GEOVERDICT_TOP_K, "
        "GEOVERDICT_MIN_PRECISION_KM, GEOVERDICT_MISMATCH_*) apply as in `consume`.",
    )
    parser.add_argument(
        "photos",
        nargs="+",
        type=Path,
        metavar="PHOTO",
        help="image files, or folders (their .jpg, .png, .webp, .heic ... files; near-duplicates "
        "among them are named)",
    )
    parser.add_argument(
        "--model", type=Path, help=f"model archive (default model_store/{DEFAULT_ARCHIVE})"
    )
    parser.add_argument(
        "--claim", type=parse_claim, metavar="LAT,LON", help="the place the post claims"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per photo")
    parser.add_argument("--device", default="auto", help="auto (a GPU if any), cpu, cuda:N")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="photos per pass")
    parser.set_defaults(func=_locate)


def _locate(args: argparse.Namespace) -> int:
    from geoverdict_service.exceptions import InvalidSettingsError  # noqa: PLC0415
    from geoverdict_service.geo import PlaceNames  # noqa: PLC0415
    from geoverdict_service.settings import load_verdict_settings  # noqa: PLC0415

    if args.batch_size < 1:
        raise LocateError(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        settings = load_verdict_settings()
    except InvalidSettingsError as exc:
        raise LocateError(str(exc)) from exc
    responder = load_responder(args.model, args.device)
    answered = failed = 0
    if not args.json:
        print(_HEADER)
    photos = expand_folders(args.photos)
    if not photos:
        raise LocateError(f"no image files in {', '.join(map(str, args.photos))}")
    results = locate(
        photos,
        responder,
        settings,
        claim=args.claim,
        places=PlaceNames(),
        batch_size=args.batch_size,
    )
    for result in results:
        if result.verdict is None:
            failed += 1
            print(f"{result.path}: {result.message}", file=sys.stderr)
            if args.json:
                print(json.dumps(result.to_json()))
            continue
        answered += 1
        row = _row(result.path, result.verdict, result.duplicate_of)
        print(json.dumps(result.to_json()) if args.json else row)
    if not args.json:
        print(f"{answered} answered, {failed} not ({responder.version})", file=sys.stderr)
    return 1 if failed else 0


_HEADER = (
    f"{'photo':<24} {'best guess':<16} {'place':<26} {'top cell':>8} {'50 % within':>11} "
    f"{'90 % within':>11}  {'scene':<8} {'c2pa':<9} claim"
)


def _row(path: Path, verdict: Verdict, duplicate_of: tuple[Path, int] | None = None) -> str:
    """One photo's line of the table."""
    location = verdict["location"]
    best, confidence = location["best_guess"], location["confidence"]
    place = best["place"]
    where = f"{place['name']}, {place['country_code']}" if place else "-"
    scene = verdict["scene"].get("s3")
    checks = []
    for check in verdict["consistency"]:
        flag = "MISMATCH" if check["location_mismatch"] else "consistent"
        checks.append(f"{check['claim_source']}: {check['distance_km']:,.0f} km off, {flag}")
    point = f"{best['lat']:.2f}, {best['lon']:.2f}"
    c2pa = verdict["provenance"]["c2pa"]
    state = c2pa["state"] + (" AI" if c2pa["ai_generated"] else "")
    row = (
        f"{_short(path.name, 24):<24} {point:<16} {_short(where, 26):<26} "
        f"{confidence['top1']:>8.1%} "
        f"{confidence['radius_50_km']:>8,.0f} km {confidence['radius_90_km']:>8,.0f} km  "
        f"{scene['label'] if scene else '-':<8} {state:<9} {'; '.join(checks) or '-'}"
    )
    capture = verdict["provenance"]["capture"]
    if capture is not None:
        row += f"; taken {capture['captured_at'][:10]} ({capture['check']})"
    if duplicate_of is not None:
        row += f"; near-duplicate of {duplicate_of[0].name} (distance {duplicate_of[1]})"
    return row


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
