"""The service's one settings object: environment variables `GEOVERDICT_*`, then CLI flags.

Validated at start-up with messages that name the setting; secrets are SecretStr and never
appear in logs or in `repr`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from geoverdict_service.exceptions import ConfigError


class Settings(BaseSettings):
    """Everything `geoverdict consume` can be told; see docs/operations.md for each."""

    # hide_input_in_errors: a validation error's text would otherwise quote every input,
    # secrets included, into any traceback that logs it.
    model_config = SettingsConfigDict(
        env_prefix="GEOVERDICT_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    # Kafka
    kafka_bootstrap_servers: str = "localhost:9092"
    input_topic: str = "geoverdict.images"
    verdict_topic: str = "geoverdict.verdicts"
    dead_letter_topic: str = "geoverdict.dead-letters"
    group_id: str = "geoverdict"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # A cap for bursts: steady traffic polls what is there. Fixed costs per batch (acks, the
    # cache round trip) spread over up to this many events.
    max_poll_records: int = Field(256, ge=1, le=10_000)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    session_timeout_ms: int = Field(45_000, ge=6_000)
    # Redis verdict cache (fail open: the service goes on without it)
    redis_url: str | None = "redis://localhost:6379/0"
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    redis_timeout_s: float = Field(0.5, gt=0)
    # TorchServe
    torchserve_url: str = "http://localhost:8080"
    model_name: str = "geoverdict"
    torchserve_token: SecretStr | None = None
    torchserve_key_file: Path | None = None
    # >= batch size x workers x 2, so the next batch is queued while one computes.
    inference_concurrency: int = Field(32, ge=1, le=512)
    inference_timeout_s: float = Field(30.0, gt=0)
    inference_retries: int = Field(3, ge=0)
    unavailable_backoff_s: float = Field(2.0, gt=0)
    unavailable_max_backoff_s: float = Field(30.0, gt=0)
    # Images by reference
    fetch_allowed_hosts: tuple[str, ...] = ()
    fetch_allow_private: bool = False
    fetch_max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    fetch_timeout_s: float = Field(10.0, gt=0)
    fetch_retries: int = Field(2, ge=0)
    # Verdicts
    top_k: int = Field(5, ge=1, le=100)
    mismatch_threshold_km: float = Field(750.0, gt=0)
    mismatch_max_mass: float = Field(0.1, ge=0, le=1)
    min_precision_km: float = Field(0.0, ge=0)
    # Operations
    metrics_port: int = Field(9400, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"  # scraped by Prometheus from another container
    shutdown_timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _token_or_key_file(self) -> Settings:
        if self.torchserve_token is None and self.torchserve_key_file is None:
            raise ValueError(
                "set GEOVERDICT_TORCHSERVE_TOKEN or GEOVERDICT_TORCHSERVE_KEY_FILE "
                "(TorchServe token authorization is on)"
            )
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options passed to every kafka-python client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        for name in ("cafile", "certfile", "keyfile"):
            value = getattr(self, f"kafka_ssl_{name}")
            if value is not None:
                options[f"ssl_{name}"] = str(value)
        return options


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with `overrides` (from CLI flags) taking precedence."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
    except SettingsError as exc:  # an environment value that is not the JSON a list needs
        raise ConfigError(
            f"invalid settings: {exc}; list settings take JSON, e.g. '[\"images.example.com\"]'"
        ) from exc
