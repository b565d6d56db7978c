"""The command line offers the commands that run where it is installed: those of the packages
installed, whose modules' `REQUIRES` are installed too (the consumer's image has no torch, no
training code and no stack launcher; tests/deploy/test_consumer_image_cli.py checks it there)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from geoverdict import cli, locate


def commands() -> set[str]:
    parser = cli.build_parser()
    return set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def without(*absent: str) -> Callable[[str], bool]:
    """`cli.installed` as in an environment without the top-level modules `absent`."""
    real = cli.installed

    def installed(name: str) -> bool:
        return name.partition(".")[0] not in absent and real(name)

    return installed


def test_commands_of_a_package_that_is_not_installed_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "installed", without("geoverdict_training"))
    offered = commands()
    assert {"consume", "publish", "watch"} <= offered
    assert "train" not in offered and "export" not in offered


def test_in_the_consumer_image_only_the_commands_that_run_there_are_offered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert {"locate", "demo", "train", "stack"} <= commands()  # here everything is installed
    monkeypatch.setattr(
        cli, "installed", without("torch", "geoverdict_training", "geoverdict_stack")
    )
    offered = commands()
    assert {"consume", "publish", "watch", "mismatch", "capacity"} <= offered
    # locate needs torch and the training code; demo the stack launcher
    assert not {"locate", "demo", "train", "stack"} & offered


def test_a_command_whose_requirement_is_missing_is_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(locate, "REQUIRES", (*locate.REQUIRES, "geoverdict_no_such_module"))
    offered = commands()
    assert "locate" not in offered and "consume" in offered
    assert not cli.installed("geoverdict_no_such_module.sub")  # its package absent: no error


def test_a_package_that_is_there_but_broken_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'timm'", name="timm")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="timm"):
        cli.build_parser()


def test_listing_the_commands_never_imports_torch() -> None:
    # `geoverdict --help` stays fast: locate's requirement is looked for, not loaded.
    code = (
        "from geoverdict import cli; cli.build_parser(); import sys; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert cli.installed("torch") and out.stdout.strip() == "False"
