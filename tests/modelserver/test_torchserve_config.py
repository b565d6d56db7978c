"""TorchServe's shipped configuration: read as Java properties, token authorization on, models
from the model store only, and the log configuration it names shipped beside it."""

from __future__ import annotations

from geoverdict_modelserver import torchserve_config
from geoverdict_modelserver.torchserve_config import read_properties


def test_properties_drop_comments_and_keep_what_follows_the_first_equals() -> None:
    text = "# a comment\n\n key = value \nurl=http://h/?a=b\nno separator\n"
    assert read_properties(text) == {"key": "value", "url": "http://h/?a=b"}


def test_the_shipped_configuration_locks_the_api_and_serves_the_store_only() -> None:
    shipped = torchserve_config.properties()
    assert shipped["disable_token_authorization"] == "false"
    assert shipped["enable_model_api"] == "false"
    assert shipped["allowed_urls"] == f"file://{shipped['model_store']}/.*"
    assert "<Configuration" in torchserve_config.text(torchserve_config.LOG_CONFIG)
