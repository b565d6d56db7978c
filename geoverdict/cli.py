"""The `geoverdict` command line: parses arguments and hands over to each package's commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

# Each module registers its subcommands with `register(subparsers)`; none imports torch at
# import time, so the service image (no torch) can run the CLI.
COMMAND_MODULES = (
    "geoverdict.locate",
    "geoverdict_stack.commands",
    "geoverdict_training.commands",
    "geoverdict_service.commands",
    "geoverdict.demo.commands",
    "geoverdict.mismatch",
    "geoverdict.capacity",
)


def installed_modules() -> list[ModuleType]:
    """The command modules of the packages installed here: the consumer's image has the
    service and the CLI but no training code or stack launcher, and offers their commands."""
    found = []
    for name in COMMAND_MODULES:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name.split(".")[0]:
                raise  # a package that is there but broken: say so
    return found


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every installed package's subcommands."""
    parser = argparse.ArgumentParser(prog="geoverdict", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in installed_modules():
        module.register(subparsers)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can cause (bad input, missing programs): one line, no stack trace."""
    found: list[type[Exception]] = []
    for module in installed_modules():
        found.extend(getattr(module, "USER_ERRORS", ()))
    return tuple(found)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `geoverdict` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python is chatty at INFO
    try:
        return int(args.func(args) or 0)
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
