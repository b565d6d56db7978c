"""The command line offers the commands of the packages installed (the consumer's image has
no training code and no stack launcher)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from geoverdict import cli


def test_commands_of_a_package_that_is_not_installed_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = importlib.import_module

    def without_training(name: str) -> Any:
        if name.startswith("geoverdict_training"):
            raise ModuleNotFoundError(f"No module named {name!r}", name="geoverdict_training")
        return real_import(name)

    monkeypatch.setattr(cli.importlib, "import_module", without_training)
    commands = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"consume", "publish", "watch"} <= set(commands)
    assert "train" not in commands and "export" not in commands


def test_a_package_that_is_there_but_broken_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'timm'", name="timm")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="timm"):
        cli.build_parser()
