"""Settings per concern: environment variables, flags, one-line errors, secrets kept out of text."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
from pydantic import ValidationError

from geoverdict_service.exceptions import InvalidSettingsError
from geoverdict_service.fetch import FetchPolicy
from geoverdict_service.settings import (
    check_environment,
    load_kafka_settings,
    load_service_settings,
    load_torchserve_settings,
    load_verdict_settings,
)

TOKEN = "ts-token-f00d"
PASSWORD = "sasl-password-c0ffee"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GEOVERDICT_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("GEOVERDICT_"):
            monkeypatch.delenv(name)


def config_error(**overrides: object) -> InvalidSettingsError:
    with pytest.raises(InvalidSettingsError) as caught:
        load_service_settings(**overrides)  # type: ignore[arg-type]
    return caught.value


def test_environment_is_read_and_flags_take_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOVERDICT_TORCHSERVE_TOKEN", TOKEN)
    monkeypatch.setenv("GEOVERDICT_MAX_POLL_RECORDS", "7")
    monkeypatch.setenv("GEOVERDICT_KAFKA_INPUT_TOPIC", "from-env")
    monkeypatch.setenv("GEOVERDICT_KAFKA_VERDICT_TOPIC", "verdicts-from-env")
    monkeypatch.setenv("GEOVERDICT_FETCH_ALLOWED_HOSTS", '["img.example.com", ".cdn.example"]')
    settings = load_service_settings(kafka={"input_topic": "from-flag"}, group_id=None)
    assert settings.max_poll_records == 7
    assert settings.kafka.input_topic == "from-flag"  # the flag wins
    assert settings.kafka.verdict_topic == "verdicts-from-env"  # the rest of the env stays
    assert settings.group_id == "geoverdict"  # None: the flag was not given
    assert settings.fetch.allowed_hosts == ("img.example.com", ".cdn.example")
    assert settings.torchserve.token is not None
    assert settings.torchserve.token.get_secret_value() == TOKEN


def test_commands_without_torchserve_need_only_the_kafka_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # publish and watch: no TorchServe token anywhere, the cluster named only by the env.
    monkeypatch.setenv("GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS", "kafka-1.internal:9094")
    kafka = load_kafka_settings(bootstrap_servers=None)
    assert kafka.client_options()["bootstrap_servers"] == ["kafka-1.internal:9094"]
    # The consumer does need TorchServe, and says which variable is missing.
    assert "GEOVERDICT_TORCHSERVE_KEY_FILE" in str(config_error())


def test_an_invalid_value_is_one_line_naming_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEOVERDICT_TORCHSERVE_TOKEN", TOKEN)
    message = str(config_error(max_poll_records=0))
    assert "\n" not in message
    assert "GEOVERDICT_MAX_POLL_RECORDS" in message
    assert "greater than or equal to 1" in message
    nested = str(config_error(kafka={"max_message_bytes": 10}))
    assert "GEOVERDICT_KAFKA_MAX_MESSAGE_BYTES" in nested
    with pytest.raises(
        InvalidSettingsError, match=r"GEOVERDICT_KAFKA_BOOTSTRAP_SERVERS.*host:port"
    ):
        load_kafka_settings(bootstrap_servers="kafka-without-port")


def test_an_invalid_environment_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOVERDICT_TORCHSERVE_TOKEN", TOKEN)
    monkeypatch.setenv("GEOVERDICT_SESSION_TIMEOUT_MS", "soon")
    assert "GEOVERDICT_SESSION_TIMEOUT_MS" in str(config_error())
    # A list is JSON in the environment; a comma-separated one is refused with the fix, not a
    # traceback.
    monkeypatch.delenv("GEOVERDICT_SESSION_TIMEOUT_MS")
    monkeypatch.setenv("GEOVERDICT_FETCH_ALLOWED_HOSTS", "a.example,b.example")
    message = str(config_error())
    assert "GEOVERDICT_FETCH_ALLOWED_HOSTS" in message
    assert "JSON" in message


def test_a_misspelt_or_renamed_variable_is_refused_with_the_right_name() -> None:
    # GEOVERDICT_INPUT_TOPIC was the name before topics moved into the Kafka settings: running
    # on the default topic without a word would be worse than refusing to start.
    with pytest.raises(InvalidSettingsError) as caught:
        check_environment({"GEOVERDICT_INPUT_TOPIC": "images", "GEOVERDICT_SHARED_DATA": "/d"})
    message = str(caught.value)
    assert "GEOVERDICT_INPUT_TOPIC" in message
    assert "GEOVERDICT_KAFKA_INPUT_TOPIC" in message
    assert "SHARED_DATA" not in message  # not a setting, but one of the project's variables
    check_environment({"GEOVERDICT_KAFKA_INPUT_TOPIC": "images", "PATH": "/bin"})


def test_unknown_settings_and_a_missing_token_are_refused() -> None:
    assert "TYPO_TOPIC" in str(config_error(torchserve={"token": TOKEN}, typo_topic="x"))
    key_file = Path("/run/torchserve/key_file.json")
    assert load_torchserve_settings(key_file=key_file).key_file == key_file


def test_sasl_settings_must_agree_with_the_security_protocol() -> None:
    with pytest.raises(
        InvalidSettingsError, match="SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD"
    ):
        load_kafka_settings(security_protocol="SASL_SSL")
    with pytest.raises(
        InvalidSettingsError, match="GEOVERDICT_KAFKA_SECURITY_PROTOCOL to SASL_SSL"
    ):
        load_kafka_settings(sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p")


def test_secrets_never_appear_in_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOVERDICT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("GEOVERDICT_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("GEOVERDICT_KAFKA_SASL_USERNAME", "geoverdict")
    monkeypatch.setenv("GEOVERDICT_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("GEOVERDICT_REDIS_URL", f"redis://geoverdict:{PASSWORD}@redis:6379/0")
    settings = load_service_settings(torchserve={"token": TOKEN})
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert TOKEN not in text
        assert PASSWORD not in text
    # Nor in the logged traceback of a refused configuration, chained causes included.
    refusals = (config_error(), config_error(torchserve={"token": TOKEN}, top_k=0))
    for refused in refusals:
        logged = "".join(traceback.format_exception(refused))
        assert "invalid settings" in logged
        assert TOKEN not in logged
        assert PASSWORD not in logged


def test_kafka_client_options_carry_security_settings() -> None:
    plain = load_kafka_settings(bootstrap_servers="k1:9092, k2:9092")
    assert plain.client_options() == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "security_protocol": "PLAINTEXT",
    }
    secure = load_kafka_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="geoverdict",
        sasl_password=PASSWORD,
        ssl_cafile=Path("/etc/ca.pem"),
    )
    options = secure.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "geoverdict"
    assert options["sasl_plain_password"] == PASSWORD
    assert options["ssl_cafile"] == "/etc/ca.pem"
    assert "ssl_certfile" not in options


def test_a_backoff_cap_below_its_start_is_one_line_at_start_up() -> None:
    message = str(
        config_error(
            torchserve={"token": TOKEN}, unavailable_backoff_s=5, unavailable_max_backoff_s=1
        )
    )
    assert "unavailable_max_backoff_s must be >= unavailable_backoff_s" in message
    assert "\n" not in message


def test_locate_reads_the_verdict_settings_without_kafka_or_torchserve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEOVERDICT_TOP_K", "3")
    monkeypatch.setenv("GEOVERDICT_MIN_PRECISION_KM", "10")
    policy = load_verdict_settings().policy()
    assert (policy.top_k, policy.min_precision_km) == (3, 10.0)
    # The consumer reads the same variables into the same policy.
    assert load_service_settings(torchserve={"token": TOKEN}).policy() == policy


def test_the_model_server_is_chosen_by_one_setting_with_its_own_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_service_settings(torchserve={"token": TOKEN}).server.url.endswith(":8080")
    monkeypatch.setenv("GEOVERDICT_MODEL_SERVER", "triton")
    monkeypatch.setenv("GEOVERDICT_TRITON_TOKEN", TOKEN)
    monkeypatch.setenv("GEOVERDICT_TRITON_BATCH_SIZE", "16")
    settings = load_service_settings()
    assert settings.model_server == "triton" and settings.torchserve is None
    assert settings.server.url == "http://localhost:8000"
    assert settings.triton is not None and settings.triton.batch_size == 16


def test_another_servers_settings_beside_the_chosen_one_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEOVERDICT_TORCHSERVE_URL", "http://ts:8080")
    message = str(config_error(model_server="triton", triton={"token": TOKEN}))
    assert message == (
        "invalid settings: GEOVERDICT_MODEL_SERVER is triton but GEOVERDICT_TORCHSERVE_URL "
        "set: unset them, or set GEOVERDICT_MODEL_SERVER=torchserve"
    )
    monkeypatch.delenv("GEOVERDICT_TORCHSERVE_URL")
    message = str(config_error(torchserve={"token": TOKEN}, triton={"url": "http://t:8000"}))
    assert "GEOVERDICT_TRITON_URL set" in message
    monkeypatch.setenv("GEOVERDICT_MODEL_SERVER", "tensorflow")
    assert "must be one of torchserve, triton, got 'tensorflow'" in str(config_error())
    monkeypatch.setenv("GEOVERDICT_MODEL_SERVER", "triton")
    assert "GEOVERDICT_TRITON_TOKEN or GEOVERDICT_TRITON_KEY_FILE" in str(config_error())


def test_the_fetch_settings_are_their_own_group_under_the_same_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The names the compose files, the chart and .env.example set: unchanged by the grouping.
    monkeypatch.setenv("GEOVERDICT_FETCH_ALLOWED_HOSTS", '["img.example.com"]')
    monkeypatch.setenv("GEOVERDICT_FETCH_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("GEOVERDICT_FETCH_MAX_BYTES", "4096")
    monkeypatch.setenv("GEOVERDICT_FETCH_TIMEOUT_S", "2.5")
    monkeypatch.setenv("GEOVERDICT_FETCH_RETRIES", "0")
    settings = load_service_settings(torchserve={"token": TOKEN})
    assert settings.fetch.policy() == FetchPolicy(
        allowed_hosts=("img.example.com",),
        allow_private=True,
        max_bytes=4096,
        timeout_s=2.5,
        retries=0,
    )
    with pytest.raises(ValidationError):  # frozen, as every group
        settings.fetch.retries = 3  # type: ignore[misc]
    # A flag-style override of the group wins over the environment.
    assert load_service_settings(torchserve={"token": TOKEN}, fetch={"retries": 4}).fetch.retries
    monkeypatch.setenv("GEOVERDICT_FETCH_MAX_BYTES", "10")
    message = str(config_error(torchserve={"token": TOKEN}))
    assert "GEOVERDICT_FETCH_MAX_BYTES" in message and "\n" not in message


def test_the_fetch_defaults_are_the_fetching_codes() -> None:
    assert load_service_settings(torchserve={"token": TOKEN}).fetch.policy() == FetchPolicy()


def test_the_provenance_settings_are_their_own_group_and_reach_the_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEOVERDICT_TORCHSERVE_TOKEN", TOKEN)
    monkeypatch.setenv("GEOVERDICT_PROVENANCE_MAX_DISTANCE", "40")
    monkeypatch.setenv("GEOVERDICT_PROVENANCE_INDEX_TABLES", "1")
    monkeypatch.setenv("GEOVERDICT_PROVENANCE_RETENTION_S", "3600")
    group = load_service_settings().provenance
    index = group.index_settings()
    assert (index.max_distance, index.tables, index.retention_s) == (40, 1, 3600)
    assert group.reuse_max_distance == 54  # every match reuses, by measurement
    monkeypatch.setenv("GEOVERDICT_PROVENANCE_INDEX_TABLES", "5")
    tables = str(config_error())
    assert "GEOVERDICT_PROVENANCE_INDEX_TABLES" in tables and "\n" not in tables
    monkeypatch.setenv("GEOVERDICT_PROVENANCE_INDEX_TABLES", "2")
    monkeypatch.setenv("GEOVERDICT_PROVENANCE_C2PA_TIMEOUT_S", "0")
    assert "GEOVERDICT_PROVENANCE_C2PA_TIMEOUT_S" in str(config_error())
    monkeypatch.delenv("GEOVERDICT_PROVENANCE_C2PA_TIMEOUT_S")
    monkeypatch.setenv("GEOVERDICT_PROVENANCE_MAX_DISTANSE", "40")  # misspelt: named right
    assert "GEOVERDICT_PROVENANCE_MAX_DISTANCE" in str(config_error())
