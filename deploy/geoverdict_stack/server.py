"""What every local server shares: prepare its folder, spawn it, wait until it answers."""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from geoverdict_stack import process
from geoverdict_stack.exceptions import StartError
from geoverdict_stack.process import ProcessRecord

log = logging.getLogger(__name__)


class Server(abc.ABC):
    """One server of the stack, living in `run_dir/<name>/` with its log in `<name>.log` there."""

    name: str = "server"

    def __init__(self, run_dir: Path, start_timeout: float) -> None:
        self.home = run_dir / self.name
        self.log_file = self.home / f"{self.name}.log"
        self.start_timeout = start_timeout

    @abc.abstractmethod
    def ports(self) -> dict[str, int]:
        """The ports this server will listen on, by role; checked free before the start."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Write configuration and data folders (no process yet)."""

    @abc.abstractmethod
    def command(self) -> Sequence[str]:
        """The argv that runs the server in the foreground."""

    def environment(self) -> Mapping[str, str]:
        """Extra environment variables for the server process."""
        return {}

    @abc.abstractmethod
    def ready(self) -> bool:
        """True once the server answers a real request (not only an open port)."""

    def start(self) -> tuple[ProcessRecord, float]:
        """Prepare, spawn and wait until ready; returns the record and the start-up seconds."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.prepare()
        started = time.monotonic()
        record = process.spawn(
            self.name, self.command(), self.log_file, self.home, self.environment()
        )
        try:
            self._wait_ready(record, deadline=started + self.start_timeout)
        except BaseException:
            # A timeout, a crash or Ctrl-C while waiting: never leave this process behind.
            process.stop(record)
            raise
        elapsed = time.monotonic() - started
        log.info("%s ready in %.1f s", self.name, elapsed)
        return record, elapsed

    def _wait_ready(self, record: ProcessRecord, deadline: float) -> None:
        while not self.ready():
            if not record.is_alive():
                raise StartError(
                    self.name,
                    "the process exited; last log lines:\n" + process.tail(self.log_file),
                    self.log_file,
                )
            if time.monotonic() > deadline:
                raise StartError(
                    self.name, f"not ready within {self.start_timeout:.0f} s", self.log_file
                )
            time.sleep(0.25)
