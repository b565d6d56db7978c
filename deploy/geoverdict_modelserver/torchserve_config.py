"""TorchServe's configuration, shipped in this package (found with importlib.resources): its
config.properties and log configuration, which the TorchServe image copies as they are and the
local stack starts from (every address moved to loopback, its own ports and folders)."""

from __future__ import annotations

import importlib.resources

PROPERTIES = "torchserve.properties"
LOG_CONFIG = "torchserve-log4j2.xml"


def text(name: str) -> str:
    """One shipped file's content (PROPERTIES or LOG_CONFIG)."""
    shipped = importlib.resources.files("geoverdict_modelserver") / "resources" / name
    return shipped.read_text()


def read_properties(text: str) -> dict[str, str]:
    """A Java .properties file's text as a dict (comments and blank lines dropped)."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def properties() -> dict[str, str]:
    """The shipped config.properties."""
    return read_properties(text(PROPERTIES))
