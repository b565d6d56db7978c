"""A photo's Content Credentials (C2PA): found by a cheap pre-scan, validated by the C2PA
library in a worker process, so a hostile manifest that hangs or crashes the native library
costs one verdict its credentials (`invalid`, with the reason) and never stops the consumer.

States: `absent` (no manifest in the file); `valid` (validated and the signer chains to a
configured trust anchor); `untrusted` (validated, but the signing credential is not trusted:
no trust anchors configured, or another CA, such as the C2PA test CA); `invalid` (any
validation failure, such as assertion.dataHash.mismatch after a pixel changed; a manifest the
library cannot read; one over the size limit; a manifest only referenced remotely, which is
never fetched; a validation that timed out or crashed). The other fields are what the active
manifest claims, filled whenever it could be read: how far to believe them is `state`."""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

from geoverdict_service.exceptions import InvalidSettingsError
from geoverdict_service.provenance import manifest_store
from geoverdict_service.provenance.credential_worker import Check, WorkerProcess
from geoverdict_service.provenance.manifest_scan import has_manifest, scan

__all__ = [
    "ABSENT",
    "C2paState",
    "CredentialReader",
    "Credentials",
    "credentials_from_store",
    "has_manifest",
]

log = logging.getLogger(__name__)

C2paState = Literal["absent", "valid", "untrusted", "invalid"]
# Manifests measured here: 50-290 KB (a thumbnail included); an edit that carries its
# ingredients' thumbnails reaches about 1 MB. Above this, refused without parsing.
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
REMOTE_NOT_FETCHED = "remote manifest not fetched"
_MAX_REASON = 300


@dataclass(frozen=True)
class Credentials:
    """A photo's Content Credentials as validated, and what its active manifest claims."""

    state: C2paState
    codes: tuple[str, ...] = ()  # validation status codes (e.g. signingCredential.untrusted)
    reason: str | None = None  # why invalid, in words
    signer: str | None = None  # the signing certificate's common name (else its issuer)
    issuer: str | None = None
    claim_generator: str | None = None
    ai_generated: bool = False  # c2pa.created with a trainedAlgorithmicMedia source type
    capture_location: tuple[float, float] | None = None  # (lat, lon) from the manifest
    captured_at: datetime | None = None  # exif:DateTimeOriginal in the manifest
    signed_at: datetime | None = None  # the signature's trusted timestamp

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; datetimes as ISO 8601."""
        doc = asdict(self)
        doc["codes"] = list(self.codes)
        doc["capture_location"] = list(self.capture_location) if self.capture_location else None
        for name in ("captured_at", "signed_at"):
            when = getattr(self, name)
            doc[name] = when.isoformat() if when else None
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Credentials:
        """The inverse of to_json; ValueError on anything malformed."""
        try:
            state = doc["state"]
            if state not in get_args(C2paState):
                raise ValueError(f"unknown state {state!r}")
            codes = tuple(_optional(code, str) for code in doc["codes"])
            location = doc["capture_location"]
            if location is not None:
                lat, lon = (float(_optional(value, (int, float))) for value in location)
                if not (math.isfinite(lat) and math.isfinite(lon)):
                    raise ValueError("a location that is not finite")
                location = (lat, lon)
            return cls(
                state=state,
                codes=tuple(code for code in codes if code),
                reason=_optional(doc["reason"], str),
                signer=_optional(doc["signer"], str),
                issuer=_optional(doc["issuer"], str),
                claim_generator=_optional(doc["claim_generator"], str),
                ai_generated=bool(_optional(doc["ai_generated"], bool)),
                capture_location=location,
                captured_at=_optional_datetime(doc["captured_at"]),
                signed_at=_optional_datetime(doc["signed_at"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed credentials: {exc}") from exc


ABSENT = Credentials("absent")

C2PA_VALIDATOR = f"{__name__}:c2pa_validator"


def invalid(reason: str, codes: tuple[str, ...] = ()) -> Credentials:
    """Credentials that could not be validated, with the reason."""
    return Credentials("invalid", codes=codes, reason=reason[:_MAX_REASON])


def c2pa_settings(trust_anchors_pem: str | None = None) -> str:
    """The C2PA library's settings: verify everything, never touch the network."""
    settings: dict[str, Any] = {
        "verify": {
            "verify_after_reading": True,
            "verify_trust": True,
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
        },
        "core": {"allowed_network_hosts": []},
    }
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    return json.dumps(settings)


def credentials_from_store(store: dict[str, Any]) -> Credentials:
    """Credentials from the library's manifest store JSON: its validation state and the
    active manifest's claims."""
    codes = manifest_store.status_codes(store)
    manifest = manifest_store.active_manifest(store)
    if manifest is None:
        return invalid("manifest store without an active manifest", codes)
    validation = store.get("validation_state")
    state: C2paState
    reason = None
    if validation == "Trusted":
        state = "valid"
    elif validation == "Valid":
        state = "untrusted"  # well formed and intact; the trust check failed or had no anchors
    else:
        state = "invalid"
        reason = "failed validation: " + (", ".join(codes) or f"state {str(validation)[:40]}")
    signer, issuer, signed_at = manifest_store.signature(manifest)
    return Credentials(
        state=state,
        codes=codes,
        reason=reason[:_MAX_REASON] if reason else None,
        signer=signer,
        issuer=issuer,
        claim_generator=manifest_store.claim_generator(manifest),
        ai_generated=manifest_store.ai_generated(manifest),
        capture_location=manifest_store.capture_location(manifest),
        captured_at=manifest_store.captured_at(manifest),
        signed_at=signed_at,
    )


def c2pa_validator(settings: str) -> Check:
    """Validates with c2pa-python (the worker's check); imported here so that only the worker
    loads the native library."""
    import c2pa  # noqa: PLC0415 (only the worker process loads the native library)

    context = c2pa.Context.from_json(settings)

    def check(image: bytes, mime: str) -> dict[str, Any]:
        return validate(image, mime).to_json()

    def validate(image: bytes, mime: str) -> Credentials:
        try:
            with c2pa.Reader(mime, io.BytesIO(image), context=context) as reader:
                store = json.loads(reader.json())
        except c2pa.C2paError as exc:
            kind = type(exc).__name__.removeprefix("_C2pa")
            if kind == "RemoteManifest":
                return invalid(REMOTE_NOT_FETCHED)
            return invalid(f"unreadable manifest ({kind}): {exc}")
        except ValueError as exc:  # the library's JSON did not parse
            return invalid(f"unreadable manifest: {exc}")
        if not isinstance(store, dict):
            return invalid("unreadable manifest: not a manifest store")
        return credentials_from_store(store)

    return check


def _optional(value: Any, kind: type | tuple[type, ...]) -> Any:
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"{value!r} is not {kind}")
    return value


def _optional_datetime(value: Any) -> datetime | None:
    text = _optional(value, str)
    return datetime.fromisoformat(text) if text else None


class CredentialReader:
    """Reads and validates Content Credentials, bounded in time and size; `read` never raises.

    Validation runs in one worker process (credential_worker), started here and replaced when
    it times out, dies or answers nonsense; one call at a time (a lock)."""

    def __init__(
        self,
        timeout_s: float = 2.0,
        max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
        trust_anchors: Path | None = None,
        start_timeout_s: float = 30.0,
        validator: str = C2PA_VALIDATOR,
        eager: bool = True,
    ) -> None:
        """`trust_anchors`: a PEM file of the CAs whose signers are `valid`; `validator`:
        "module:function" building the worker's check from the settings (tests swap it);
        `eager`: start the worker now rather than at the first manifest."""
        if timeout_s <= 0 or max_manifest_bytes < 1:
            raise InvalidSettingsError("timeout_s and max_manifest_bytes must be positive")
        pem = None
        if trust_anchors is not None:
            try:
                pem = trust_anchors.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidSettingsError(f"cannot read trust anchors {trust_anchors}") from exc
        self.timeout_s = timeout_s
        self.max_manifest_bytes = max_manifest_bytes
        self._start_timeout_s = start_timeout_s
        self._settings = c2pa_settings(pem)
        self._validator = validator
        self._lock = threading.Lock()
        self._closed = False
        # started now, so that it has loaded the library before the first manifest arrives
        self._worker: WorkerProcess | None = (
            WorkerProcess(validator, self._settings) if eager else None
        )

    def read(self, image: bytes, mime: str | None = None) -> Credentials:
        """The image's credentials; `mime` is a hint when the magic bytes say nothing."""
        found = scan(image)
        if not found.found:
            return ABSENT
        if found.manifest_bytes > self.max_manifest_bytes:
            return invalid(
                f"manifest of {found.manifest_bytes} bytes over the limit of "
                f"{self.max_manifest_bytes} (not parsed)"
            )
        if found.manifest_bytes == 0:
            return invalid(REMOTE_NOT_FETCHED)  # only a reference: nothing here to validate
        with self._lock:
            return self._validate(image, found.mime or mime or "application/octet-stream")

    def _validate(self, image: bytes, mime: str) -> Credentials:
        if self._closed:
            return invalid("credential reader closed")
        if self._worker is None:
            self._worker = WorkerProcess(self._validator, self._settings)
        started = time.monotonic()
        try:
            answer = self._worker.ask(image, mime, self.timeout_s, self._start_timeout_s)
            if "error" in answer:
                return invalid(f"validation error: {str(answer['error'])[:80]}")
            return Credentials.from_json(answer)
        except TimeoutError:
            reason = f"validation timed out after {self.timeout_s:g} s"
        except (EOFError, OSError) as exc:
            reason = f"validator crashed: {exc}"
        except ValueError as exc:
            reason = f"validator answered nonsense: {exc}"
        log.warning(
            "C2PA validator %d replaced after %.2f s: %s",
            self._worker.pid,
            time.monotonic() - started,
            reason,
        )
        self._worker.stop()
        self._worker = WorkerProcess(self._validator, self._settings)
        return invalid(reason)

    def close(self) -> None:
        """Stops the worker process."""
        with self._lock:
            self._closed = True
            if self._worker is not None:
                self._worker.stop(grace_s=1.0)
                self._worker = None

    def __enter__(self) -> CredentialReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
