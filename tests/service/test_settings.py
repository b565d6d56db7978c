"""The settings object: environment variables, flags, one-line errors, secrets kept out of text."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from geoverdict_service.exceptions import ConfigError
from geoverdict_service.settings import load_settings

TOKEN = "ts-token-f00d"
PASSWORD = "sasl-password-c0ffee"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GEOVERDICT_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("GEOVERDICT_"):
            monkeypatch.delenv(name)


def config_error(**overrides: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    return caught.value


def test_environment_is_read_and_flags_take_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOVERDICT_TORCHSERVE_TOKEN", TOKEN)
    monkeypatch.setenv("GEOVERDICT_MAX_POLL_RECORDS", "7")
    monkeypatch.setenv("GEOVERDICT_INPUT_TOPIC", "from-env")
    monkeypatch.setenv("GEOVERDICT_FETCH_ALLOWED_HOSTS", '["img.example.com", ".cdn.example"]')
    settings = load_settings(input_topic="from-flag", group_id=None)  # None: flag not given
    assert settings.max_poll_records == 7
    assert settings.input_topic == "from-flag"
    assert settings.group_id == "geoverdict"
    assert settings.fetch_allowed_hosts == ("img.example.com", ".cdn.example")
    assert settings.torchserve_token is not None
    assert settings.torchserve_token.get_secret_value() == TOKEN


def test_an_invalid_value_is_one_line_naming_the_setting() -> None:
    message = str(config_error(torchserve_token=TOKEN, max_poll_records=0))
    assert "\n" not in message
    assert "max_poll_records" in message
    assert "greater than or equal to 1" in message


def test_an_invalid_environment_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOVERDICT_TORCHSERVE_TOKEN", TOKEN)
    monkeypatch.setenv("GEOVERDICT_SESSION_TIMEOUT_MS", "soon")
    assert "session_timeout_ms" in str(config_error())
    # A list is JSON in the environment; a comma-separated one is refused with the fix, not a
    # traceback.
    monkeypatch.delenv("GEOVERDICT_SESSION_TIMEOUT_MS")
    monkeypatch.setenv("GEOVERDICT_FETCH_ALLOWED_HOSTS", "a.example,b.example")
    message = str(config_error())
    assert "fetch_allowed_hosts" in message
    assert "JSON" in message


def test_unknown_settings_and_a_missing_token_are_refused() -> None:
    assert "typo_topic" in str(config_error(torchserve_token=TOKEN, typo_topic="x"))
    assert "GEOVERDICT_TORCHSERVE_KEY_FILE" in str(config_error())
    key_file = Path("/run/torchserve/key_file.json")
    assert load_settings(torchserve_key_file=key_file).torchserve_key_file == key_file


def test_secrets_never_appear_in_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOVERDICT_KAFKA_SASL_PASSWORD", PASSWORD)
    settings = load_settings(torchserve_token=TOKEN)
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert TOKEN not in text
        assert PASSWORD not in text
    # Nor in the logged traceback of a refused configuration, chained causes included.
    for refused in (config_error(), config_error(torchserve_token=TOKEN, top_k=0)):
        logged = "".join(traceback.format_exception(refused))
        assert "invalid settings" in logged
        assert TOKEN not in logged
        assert PASSWORD not in logged


def test_kafka_client_options_carry_security_settings() -> None:
    plain = load_settings(torchserve_token=TOKEN, kafka_bootstrap_servers="k1:9092,k2:9092")
    assert plain.kafka_client_options() == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "security_protocol": "PLAINTEXT",
    }
    secure = load_settings(
        torchserve_token=TOKEN,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="geoverdict",
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=Path("/etc/ca.pem"),
    )
    options = secure.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "geoverdict"
    assert options["sasl_plain_password"] == PASSWORD
    assert options["ssl_cafile"] == "/etc/ca.pem"
    assert "ssl_certfile" not in options
