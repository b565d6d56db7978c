"""A server process started in its own session, logged to a file and stopped by process group."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find a started process again, also from another `geoverdict` call."""

    name: str
    pid: int
    create_time: float  # psutil's start time: guards against a recycled PID
    log_file: str
    # The start time after boot: psutil's create_time is boot time + that, both read from the
    # wall clock, so a clock step (NTP) moves it, and a live server looked gone (its CPU then
    # counted as 0 by the benchmark). None in a record written before it was kept.
    started_after_boot: float | None = None

    def process(self) -> psutil.Process | None:
        """The live process, or None when it is gone (or the PID now belongs to another)."""
        try:
            proc = psutil.Process(self.pid)
            if self.started_after_boot is not None:
                moved = proc.create_time() - psutil.boot_time() - self.started_after_boot
            else:
                moved = proc.create_time() - self.create_time
            if abs(moved) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def is_alive(self) -> bool:
        """True while the process runs."""
        return self.process() is not None


def spawn(
    name: str,
    argv: Sequence[str],
    log_file: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Start `argv` in a new session (its own process group), stdout and stderr to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    # The log file, not a pipe: TorchServe's Java child keeps stdout open after its parent exits.
    with log_file.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    create_time = psutil.Process(popen.pid).create_time()
    log.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
    return ProcessRecord(
        name, popen.pid, create_time, str(log_file), create_time - psutil.boot_time()
    )


def stop(record: ProcessRecord, timeout: float = 15.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left (children included)."""
    proc = record.process()
    if proc is None:
        return
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        members = [proc]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=timeout)
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, signal.SIGKILL)
    _reap(record.pid)


def _reap(pid: int) -> None:
    """Collect the exit status of our own child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def tail(log_file: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate` until it returns True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
