"""The system tests' command-line options (a plugin of tests/conftest.py, so that pytest knows
them wherever it is started): `--full-size` runs the proofs at the issue's sizes and writes
their report, `--soak-rate N` adds the soak."""

from __future__ import annotations

import argparse

import pytest

MODEL_SERVERS = ("torchserve", "triton")


def pytest_addoption(parser: pytest.Parser) -> None:
    """--full-size, --model-server, --soak-rate, --soak-duration, --soak-window."""
    group = parser.getgroup("system", "system tests (tests/system): exactly-once proofs, soak")
    group.addoption(
        "--full-size",
        action="store_true",
        help="the proofs at the issue's sizes on a stack of their own serving the model "
        "archive (tens of minutes), results into bench/exactly-once.json and docs/benchmarks.md",
    )
    group.addoption(
        "--model-server",
        choices=MODEL_SERVERS,
        default="torchserve",
        help="with --full-size: the model server the consumers talk to (default torchserve)",
    )
    group.addoption(
        "--soak-rate",
        type=positive_float,
        help="with --full-size: also run the soak at N events/s, results into bench/soak.json",
    )
    group.addoption(
        "--soak-duration", type=duration, default=3600.0, help="e.g. 1h (default), 20m, 90s"
    )
    group.addoption("--soak-window", type=duration, default=300.0, help="sampling window (5m)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """At full size a proof takes minutes and the soak an hour: no per-test timeout."""
    if not config.getoption("full_size"):
        return
    for item in items:
        if item.nodeid.startswith("tests/system/"):
            item.add_marker(pytest.mark.timeout(0))


def positive_float(text: str) -> float:
    """A number > 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def duration(text: str) -> float:
    """Seconds from 90, 90s, 20m or 1h."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1.0)
    try:
        return positive_float(number) * unit
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"not a duration (90s, 20m, 1h): {text!r}") from exc
