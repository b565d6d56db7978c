"""The training half's subcommands of `geoverdict`: `partition | evaluate | data` (data.py) and
`train | export | calibrate | scenes` (model.py).

Only argument parsing lives here; torch and the work are imported inside each command, so that
`geoverdict --help` stays fast and never imports torch.
"""

from __future__ import annotations

import argparse

from geoverdict_common.exceptions import CommonError
from geoverdict_training.commands import data, model
from geoverdict_training.exceptions import TrainingError

REQUIRES = ("torch",)  # imported by the commands, not here

# The CLI prints these as one line on stderr and exits 2 (a user's input, not a bug).
USER_ERRORS: tuple[type[Exception], ...] = (TrainingError, CommonError)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the training half's commands."""
    data.register(subparsers)
    model.register(subparsers)
