"""Stopping at a safe point: the first Ctrl-C or SIGTERM asks, the second insists.

After the first signal the loop finishes the stage in flight (its data and record are written
whole) and stops before the next one. A second signal raises KeyboardInterrupt at once; since
every file is written aside and renamed, that still corrupts nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("selfloop")


class StopRequested(Exception):
    """Raised at a safe point after a stop was asked for."""


class Stopper:
    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        log.warning(
            "stopping after the stage in flight (%s); press Ctrl-C again to stop now",
            signal.Signals(signum).name,
        )

    def install(self) -> Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def check(self) -> None:
        if self.requested.is_set():
            raise StopRequested
