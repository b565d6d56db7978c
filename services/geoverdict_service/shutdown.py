"""SIGTERM and Ctrl-C: stop gracefully, but always within the shutdown timeout.

The first signal asks the service to stop (finish the batch, commit, close) and starts a
watchdog: if the process is still running when the timeout passes (a client call that blocks
inside a library and never looks at the stop flag), it exits anyway with status 1. A second
signal exits at once. Kubernetes' terminationGracePeriodSeconds and `timeout` rely on this.
Exiting without the final commit only means the last batch is delivered again (at least once).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

FORCED_EXIT_STATUS = 1


class GracefulShutdown:
    """Installs the handlers; `requested` is set by the first signal."""

    def __init__(
        self,
        timeout_s: float,
        on_stop: Callable[[], None],
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self.timeout_s = timeout_s
        self.on_stop = on_stop
        self.requested = threading.Event()
        self._exit = exit
        self._watchdog: threading.Timer | None = None

    def install(self) -> None:
        """Handle SIGTERM and SIGINT (main thread only: Python's rule for signal handlers)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """A signal arrived."""
        name = signal.Signals(signum).name
        if self.requested.is_set():
            log.warning("%s again: exiting now", name)
            self._leave(128 + signum)
            return
        self.requested.set()
        log.info("%s: stopping (at most %.0f s)", name, self.timeout_s)
        self._watchdog = threading.Timer(self.timeout_s, self._expired)
        self._watchdog.daemon = True
        self._watchdog.start()
        self.on_stop()

    def cancel(self) -> None:
        """The process stopped in time: no forced exit."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _expired(self) -> None:
        log.error(
            "did not stop within the shutdown timeout (%.0f s): exiting; the last batch will "
            "be delivered again",
            self.timeout_s,
        )
        self._leave(FORCED_EXIT_STATUS)

    def _leave(self, status: int) -> None:
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        self._exit(status)
