"""The `geoverdict` command line: parses arguments and hands over to each package's commands."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

# Each module registers its subcommands with `register(subparsers)`; none imports torch at
# import time, so the service image (no torch) can run the CLI. A module whose commands need
# more than its own package names those top-level modules in `REQUIRES`: without them its
# commands are not offered (the consumer's image has no torch, training code or stack).
COMMAND_MODULES = (
    "geoverdict.locate",
    "geoverdict_stack.commands",
    "geoverdict_images.commands",
    "geoverdict_cluster.commands",
    "geoverdict_training.commands",
    "geoverdict_service.commands",
    "geoverdict_service.provenance.commands",
    "geoverdict.demo.commands",
    "geoverdict.mismatch",
    "geoverdict.capacity",
)


def installed(name: str) -> bool:
    """Whether module `name` can be imported here (found, not imported: torch costs seconds)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose package is not installed
        return False


def installed_modules() -> list[ModuleType]:
    """The command modules whose commands run here: their package installed, and what they
    declare in `REQUIRES`."""
    found = []
    for name in COMMAND_MODULES:
        if not installed(name):
            continue
        module = importlib.import_module(name)  # a package that is there but broken: say so
        if all(installed(required) for required in getattr(module, "REQUIRES", ())):
            found.append(module)
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


def configure_logging(verbose: bool) -> None:
    """Log lines with time, level and logger; debug with `verbose`, else kafka-python quieter."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python is chatty at INFO


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `geoverdict` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
