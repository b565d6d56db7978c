"""Settings per concern, read from `GEOVERDICT_*` environment variables, then CLI flags.

`KafkaSettings` (`GEOVERDICT_KAFKA_*`: servers, security, topics, limits) is shared by every
command that talks to Kafka (consume, publish, watch, demo, bench); `TorchServeSettings`
(`GEOVERDICT_TORCHSERVE_*`) or `TritonSettings` (`GEOVERDICT_TRITON_*`), chosen by
`GEOVERDICT_MODEL_SERVER`, only by those that call the model server; `VerdictSettings`
(`GEOVERDICT_TOP_K`, the mismatch flag, the privacy floor) by those that build verdicts
(consume, locate); `FetchSettings` (`GEOVERDICT_FETCH_*`: images by reference) by the consumer;
`ServiceSettings` (`GEOVERDICT_*`) is the consumer's: the verdict settings and its own, holding
the Kafka, model-server and fetch groups. Each is frozen and validated at start-up with one-line
messages that name the environment variable; secrets are SecretStr and never appear in logs,
`repr` or tracebacks.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from geoverdict_service.exceptions import InvalidSettingsError
from geoverdict_service.fetch import FetchPolicy
from geoverdict_service.provenance.credentials import DEFAULT_MAX_MANIFEST_BYTES
from geoverdict_service.provenance.fingerprints import MATCH_DISTANCE
from geoverdict_service.provenance.index import MAX_TABLES, IndexSettings
from geoverdict_service.provenance.report import RECYCLED_CLAIM_KM, ProvenancePolicy
from geoverdict_service.verdicts import MISMATCH_MAX_MASS, MISMATCH_THRESHOLD_KM, VerdictPolicy

ENV_PREFIX = "GEOVERDICT_"
# GEOVERDICT_* variables that are not settings of a process (tests, docker-compose).
OTHER_VARIABLES = frozenset({"SHARED_DATA", "PARTITIONS", "VERSION"})
# The broker's default message.max.bytes (1 MiB plus a record batch's overhead).
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588

ModelServerName = Literal["torchserve", "triton"]
MODEL_SERVERS: tuple[str, ...] = ("torchserve", "triton")
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _config(prefix: str) -> SettingsConfigDict:
    # hide_input_in_errors: a validation error's text would otherwise quote every input,
    # secrets included, into any traceback that logs it.
    return SettingsConfigDict(
        env_prefix=prefix, frozen=True, extra="forbid", hide_input_in_errors=True
    )


class KafkaSettings(BaseSettings):
    """How to reach Kafka and which topics to use: the same for every command."""

    model_config = _config(f"{ENV_PREFIX}KAFKA_")

    bootstrap_servers: str = "localhost:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    input_topic: str = Field("geoverdict.images", min_length=1, max_length=249)
    verdict_topic: str = Field("geoverdict.verdicts", min_length=1, max_length=249)
    dead_letter_topic: str = Field("geoverdict.dead-letters", min_length=1, max_length=249)
    # The broker's message.max.bytes and the topics' max.message.bytes: the largest record
    # the service may produce; fetch and receive limits are derived from it.
    max_message_bytes: int = Field(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, ge=16 * 1024)
    # Start-up: how long a command waits for the cluster (and the input topic) before it
    # stops with an error. Long enough for a broker that starts beside the consumer.
    connect_timeout_s: float = Field(30.0, gt=0)

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",")]
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return ",".join(servers)

    @model_validator(mode="after")
    def _security_consistent(self) -> KafkaSettings:
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security protocol {self.security_protocol} needs "
                f"{ENV_PREFIX}KAFKA_SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD"
            )
        if self.sasl_mechanism and not uses_sasl:
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SASL_MECHANISM is set but the security protocol is "
                f"{self.security_protocol}: set {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL to "
                "SASL_SSL (or SASL_PLAINTEXT)"
            )
        return self

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list."""
        return self.bootstrap_servers.split(",")

    def client_options(self) -> dict[str, Any]:
        """Connection and security options for every kafka-python client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        for name in ("cafile", "certfile", "keyfile"):
            value = getattr(self, f"ssl_{name}")
            if value is not None:
                options[f"ssl_{name}"] = str(value)
        return options


class ModelServerSettings(BaseSettings):
    """How to reach a model server: only commands that call it read these. The secret is a
    token, or a key file in TorchServe's key_file.json format (re-read when refused: keys
    rotate)."""

    model_config = _config(f"{ENV_PREFIX}MODEL_SERVER_")  # each server's class sets its own

    url: str
    model_name: str = "geoverdict"
    token: SecretStr | None = None
    key_file: Path | None = None
    concurrency: int = Field(32, ge=1, le=512)  # requests in flight
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(3, ge=0)

    @model_validator(mode="after")
    def _token_or_key_file(self) -> ModelServerSettings:
        if self.token is None and self.key_file is None:
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(
                f"set {prefix}TOKEN or {prefix}KEY_FILE (the model server refuses "
                "requests without its inference secret)"
            )
        return self


class TorchServeSettings(ModelServerSettings):
    """TorchServe: one HTTP request per image, batched by TorchServe's frontend."""

    model_config = _config(f"{ENV_PREFIX}TORCHSERVE_")

    url: str = "http://localhost:8080"
    # >= batch size x workers x 2, so the next batch is queued while one computes.
    concurrency: int = Field(32, ge=1, le=512)


class TritonSettings(ModelServerSettings):
    """A server of the Open Inference Protocol (Triton): several images per request, as binary
    tensors, merged further by the server's dynamic batcher."""

    model_config = _config(f"{ENV_PREFIX}TRITON_")

    url: str = "http://localhost:8000"
    # Images per request (and at most this many bytes of them): fewer round trips and JSON
    # headers per image; the dynamic batcher still merges requests into the model's batches.
    batch_size: int = Field(8, ge=1, le=256)
    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    concurrency: int = Field(4, ge=1, le=512)
    # Triton's --http-restricted-api refuses inference without this header; the value sent is
    # "Bearer <secret>".
    auth_header: str = Field("authorization", min_length=1, pattern=r"^[A-Za-z0-9-]+$")


class FetchSettings(BaseSettings):
    """Images by reference: which hosts the consumer may fetch from, and how much and how long."""

    model_config = _config(f"{ENV_PREFIX}FETCH_")

    allowed_hosts: tuple[str, ...] = FetchPolicy.allowed_hosts  # ".suffix": subdomains too
    allow_private: bool = FetchPolicy.allow_private
    max_bytes: int = Field(FetchPolicy.max_bytes, ge=1024)
    timeout_s: float = Field(FetchPolicy.timeout_s, gt=0)
    retries: int = Field(FetchPolicy.retries, ge=0)

    def policy(self) -> FetchPolicy:
        """The fetching code's view of these settings."""
        return FetchPolicy(
            allowed_hosts=self.allowed_hosts,
            allow_private=self.allow_private,
            max_bytes=self.max_bytes,
            timeout_s=self.timeout_s,
            retries=self.retries,
        )


class ProvenanceSettings(BaseSettings):
    """The photo's history: the near-duplicate index (in the cache's Redis) and its Content
    Credentials; docs/verdicts.md explains each threshold, docs/privacy.md the retention."""

    model_config = _config(f"{ENV_PREFIX}PROVENANCE_")

    # Off: no fingerprint, no index, no C2PA (provenance.index "disabled", c2pa "absent").
    enabled: bool = True
    # Hamming distance (of 256 bits) within which two photos are the same picture; the default
    # had no false match among 2 million pairs of distinct photos (docs/benchmarks.md).
    max_distance: int = Field(MATCH_DISTANCE, ge=0, le=128)
    # A near-duplicate this close reuses the prediction its photo was answered with. Measured
    # (bench/repost-predictions.json): the original's answer is as close to the truth as the
    # copy's own, or closer, for 15 of 16 alterations, so every match reuses by default.
    # -1: never reuse.
    reuse_max_distance: int = Field(MATCH_DISTANCE, ge=-1, le=128)
    recycled_claim_km: float = Field(RECYCLED_CLAIM_KM, gt=0)
    # How long a photo's sightings are kept after its last one, and how many claims of it.
    retention_s: int = Field(30 * 24 * 3600, ge=1)
    max_claims: int = Field(10, ge=1, le=1000)
    # Cuts of the hash bits the index reads buckets of: more find more of the farther copies
    # (crops, overlaid text) for more reads and memory (docs/benchmarks.md, "through the index").
    index_tables: int = Field(IndexSettings.tables, ge=1, le=MAX_TABLES)
    # C2PA: a manifest is validated in a worker process for at most this long; larger
    # manifests are refused unread. Trust anchors (PEM): signers to report as `valid`.
    c2pa_timeout_s: float = Field(2.0, gt=0)
    c2pa_max_manifest_bytes: int = Field(DEFAULT_MAX_MANIFEST_BYTES, ge=1024)
    c2pa_trust_anchors: Path | None = None

    def index_settings(self) -> IndexSettings:
        """The near-duplicate index's view of these settings."""
        return IndexSettings(
            max_distance=self.max_distance,
            retention_s=self.retention_s,
            max_claims=self.max_claims,
            tables=self.index_tables,
        )

    def policy(self, min_precision_km: float) -> ProvenancePolicy:
        """How provenance is reported, with the verdicts' privacy floor."""
        return ProvenancePolicy(
            recycled_claim_km=self.recycled_claim_km, min_precision_km=min_precision_km
        )


class VerdictSettings(BaseSettings):
    """How predictions become verdicts: for `consume` and `locate` alike."""

    model_config = _config(ENV_PREFIX)

    # Verdicts
    top_k: int = Field(5, ge=1, le=100)
    mismatch_threshold_km: float = Field(MISMATCH_THRESHOLD_KM, gt=0)
    mismatch_max_mass: float = Field(MISMATCH_MAX_MASS, ge=0, le=1)
    # Privacy floor: every published point and every figure derived from a claim (often the
    # photo's exact GPS) is no finer than this. 5 km hides a home to a town district, yet is
    # five times finer than the finest check a verdict reports (25 km): see docs/privacy.md.
    min_precision_km: float = Field(5.0, ge=0)

    def policy(self) -> VerdictPolicy:
        """The verdict code's view of these settings."""
        return VerdictPolicy(
            top_k=self.top_k,
            mismatch_threshold_km=self.mismatch_threshold_km,
            mismatch_max_mass=self.mismatch_max_mass,
            min_precision_km=self.min_precision_km,
        )


class RedisSettings(BaseSettings):
    """The Redis of the prediction cache and the near-duplicate index (consume, provenance
    erase)."""

    model_config = _config(ENV_PREFIX)

    # May hold the user and password (redis://geoverdict:PASSWORD@host:6379/0): a secret.
    redis_url: SecretStr | None = SecretStr("redis://localhost:6379/0")
    redis_timeout_s: float = Field(0.5, gt=0)


class ServiceSettings(VerdictSettings, RedisSettings):
    """Everything `geoverdict consume` can be told; see docs/operations.md for each."""

    model_config = _config(ENV_PREFIX)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # Which model server answers (TorchServe, the default, or Triton); only its settings group
    # is read, and the other's variables are refused (load_service_settings).
    model_server: ModelServerName = "torchserve"
    torchserve: TorchServeSettings | None = None
    triton: TritonSettings | None = None
    group_id: str = Field("geoverdict", min_length=1)
    # A cap for bursts: steady traffic polls what is there. Fixed costs per batch (acks, the
    # cache round trip) spread over up to this many events.
    max_poll_records: int = Field(256, ge=1, le=10_000)
    # A batch must be answered within this, or the group takes its partitions away; with
    # exactly_once its transaction stays open as long (transaction_timeout_ms).
    max_poll_interval_ms: int = Field(120_000, ge=10_000)
    session_timeout_ms: int = Field(45_000, ge=6_000)
    # exactly_once: each poll's verdicts, dead letters and offsets of one input partition in
    # one Kafka transaction (docs/operations.md, "Processing guarantee"); at_least_once:
    # offsets committed after Kafka acknowledged the answers (a crash between re-sends them).
    processing_guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    # Transactional ids are PREFIX-GROUP-TOPIC-PARTITION: one producer per input partition,
    # which fences the partition's former owner (its open transaction aborted) when created.
    transactional_id_prefix: str = Field("geoverdict", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # No transaction outlives this (the broker aborts it); >= max_poll_interval_ms, so a batch
    # still within its poll interval is never cut short, and <= the broker's
    # transaction.max.timeout.ms (15 minutes by default).
    transaction_timeout_ms: int = Field(120_000, ge=10_000, le=900_000)
    # Redis prediction cache (fail open: the service goes on without it): RedisSettings
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    # Predictions checked once kept in the process too (an LRU; about 13 KB each): 0 turns it off.
    cache_local_entries: int = Field(2048, ge=0, le=1_000_000)
    # While TorchServe is unavailable the partitions pause; retries back off up to the max.
    unavailable_backoff_s: float = Field(2.0, gt=0)
    unavailable_max_backoff_s: float = Field(30.0, gt=0)
    fetch: FetchSettings = Field(default_factory=FetchSettings)  # images by reference
    provenance: ProvenanceSettings = Field(default_factory=ProvenanceSettings)
    # "copy": a dead letter is the record as it came (replayable as it is); "reference": its
    # place, hash and size only, no image bytes or URL query kept for the topic's retention.
    dead_letter_payload: Literal["copy", "reference"] = "copy"
    # Operations
    metrics_port: int = Field(9400, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # scraped by Prometheus from another container
    # SIGTERM: finish the batch, commit, close within this; past it the process exits anyway.
    shutdown_timeout_s: float = Field(30.0, gt=0)

    @property
    def server(self) -> ModelServerSettings:
        """The settings of the model server that answers."""
        chosen = self.torchserve if self.model_server == "torchserve" else self.triton
        if chosen is None:  # _one_model_server refused it
            raise InvalidSettingsError(f"no settings for the model server {self.model_server}")
        return chosen

    @model_validator(mode="after")
    def _one_model_server(self) -> ServiceSettings:
        chosen = self.torchserve if self.model_server == "torchserve" else self.triton
        other = self.triton if self.model_server == "torchserve" else self.torchserve
        if chosen is None or other is not None:
            raise ValueError(
                f"model_server is {self.model_server}: give its settings and no other server's"
            )
        return self

    @model_validator(mode="after")
    def _transactions_outlast_batches(self) -> ServiceSettings:
        if (
            self.processing_guarantee == "exactly_once"
            and self.transaction_timeout_ms < self.max_poll_interval_ms
        ):
            raise ValueError(
                "transaction_timeout_ms must be >= max_poll_interval_ms with exactly_once "
                f"({self.transaction_timeout_ms} < {self.max_poll_interval_ms}): a batch "
                "within its poll interval would see its transaction aborted"
            )
        return self

    @model_validator(mode="after")
    def _backoff_range(self) -> ServiceSettings:
        if self.unavailable_max_backoff_s < self.unavailable_backoff_s:
            raise ValueError(
                "unavailable_max_backoff_s must be >= unavailable_backoff_s "
                f"({self.unavailable_max_backoff_s} < {self.unavailable_backoff_s})"
            )
        return self


Loaded = TypeVar("Loaded", bound=BaseSettings)
# The settings groups nested in ServiceSettings, each read from its own GEOVERDICT_NAME_*.
GROUPS = ("kafka", "fetch", "provenance", *MODEL_SERVERS)


def _env_name(cls: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable behind an error's location (nested settings included)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    if len(loc) >= 2 and loc[0] in GROUPS:
        prefix = f"{ENV_PREFIX}{str(loc[0]).upper()}_"
        loc = loc[1:]
    field = "_".join(str(p) for p in loc if not isinstance(p, int))
    return f"{prefix}{field}".upper() if field else cls.__name__


def _load(cls: type[Loaded], overrides: Mapping[str, Any]) -> Loaded:
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{_env_name(cls, tuple(err['loc']))}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidSettingsError(f"invalid settings: {problems}") from exc
    except SettingsError as exc:  # an environment value that is not the JSON a list needs
        field = re.search(r'field "(\w+)"', str(exc))
        name = _env_name(cls, (field.group(1),)) if field else cls.__name__
        raise InvalidSettingsError(
            f"invalid settings: {name}: {exc}; list settings take JSON, "
            "e.g. '[\"images.example.com\"]'"
        ) from exc


def _known_variables() -> set[str]:
    names = {f"{ENV_PREFIX}{name}" for name in OTHER_VARIABLES}
    groups = (
        KafkaSettings,
        FetchSettings,
        ProvenanceSettings,
        TorchServeSettings,
        TritonSettings,
        ServiceSettings,
    )
    for cls in groups:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a GEOVERDICT_* variable that is no setting: a typo (or a setting renamed) would
    otherwise be ignored without a word, and the service would run on a default."""
    known = _known_variables()
    env = os.environ if environ is None else environ
    unknown = sorted(n for n in env if n.upper().startswith(ENV_PREFIX) and n.upper() not in known)
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.75)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise InvalidSettingsError(f"unknown setting in the environment: {', '.join(hints)}")


def load_kafka_settings(**overrides: Any) -> KafkaSettings:
    """Kafka settings from the environment, with `overrides` (CLI flags) taking precedence."""
    check_environment()
    return _load(KafkaSettings, overrides)


def load_torchserve_settings(**overrides: Any) -> TorchServeSettings:
    """TorchServe settings from the environment, with `overrides` taking precedence."""
    check_environment()
    return _load(TorchServeSettings, overrides)


def load_verdict_settings(**overrides: Any) -> VerdictSettings:
    """The verdict settings from the environment, with `overrides` taking precedence."""
    check_environment()
    return _load(VerdictSettings, overrides)


def chosen_model_server(
    model_server: str | None, environ: Mapping[str, str] | None = None
) -> ModelServerName:
    """GEOVERDICT_MODEL_SERVER (or the flag), checked."""
    env = os.environ if environ is None else environ
    name = model_server or env.get(f"{ENV_PREFIX}MODEL_SERVER") or "torchserve"
    if name not in MODEL_SERVERS:
        raise InvalidSettingsError(
            f"invalid settings: {ENV_PREFIX}MODEL_SERVER must be one of "
            f"{', '.join(MODEL_SERVERS)}, got {name!r}"
        )
    return name  # type: ignore[return-value]


def load_index_settings(
    redis_url: str | None = None,
) -> tuple[RedisSettings, ProvenanceSettings]:
    """Where the near-duplicate index is and how it is cut: environment, then `redis_url`."""
    check_environment()
    return _load(RedisSettings, {"redis_url": redis_url}), _load(ProvenanceSettings, {})


def load_service_settings(
    kafka: Mapping[str, Any] | None = None,
    torchserve: Mapping[str, Any] | None = None,
    triton: Mapping[str, Any] | None = None,
    fetch: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> ServiceSettings:
    """The consumer's settings: environment, then `overrides` (and the nested ones) on top.
    Only the chosen model server's settings are read; another server's, in the environment or
    given, are refused: a consumer that reads one group while the operator set the other
    would talk to a server nobody meant."""
    check_environment()
    name = chosen_model_server(overrides.pop("model_server", None))
    groups: dict[str, tuple[type[ModelServerSettings], Mapping[str, Any] | None]] = {
        "torchserve": (TorchServeSettings, torchserve),
        "triton": (TritonSettings, triton),
    }
    for other, (cls, given) in groups.items():
        if other == name:
            continue
        prefix = str(cls.model_config.get("env_prefix", ""))
        stray = sorted(n for n in os.environ if n.upper().startswith(prefix))
        stray += [f"{prefix}{k}".upper() for k, v in (given or {}).items() if v is not None]
        if stray:
            raise InvalidSettingsError(
                f"invalid settings: {ENV_PREFIX}MODEL_SERVER is {name} but {', '.join(stray)} "
                f"set: unset them, or set {ENV_PREFIX}MODEL_SERVER={other}"
            )
    cls, given = groups[name]
    return _load(
        ServiceSettings,
        {
            "kafka": _load(KafkaSettings, kafka or {}),
            "fetch": _load(FetchSettings, fetch or {}),
            "provenance": _load(ProvenanceSettings, provenance or {}),
            "model_server": name,
            name: _load(cls, given or {}),
            **overrides,
        },
    )
