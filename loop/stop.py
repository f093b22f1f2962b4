"""Stopping at a safe point: the first Ctrl-C or SIGTERM asks, the second insists.

`selfloop stop RUN` asks too, by leaving a request file in the run folder (which works from any
machine that sees the folder). After a request the loop finishes the stage in flight (its data
and record are written whole) and stops before the next one. A second signal raises
KeyboardInterrupt at once; since every file is written aside and renamed, that still corrupts
nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

log = logging.getLogger("selfloop")


class StopRequested(Exception):
    """Raised at a safe point after a stop was asked for. `exit_code` is what the command exits
    with: 128 + the signal's number, as shells report a process that a signal ended (130 after
    Ctrl-C, 143 after SIGTERM), or 0 after `selfloop stop`, which asked for exactly this."""

    def __init__(self, exit_code: int = 0) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class Stopper:
    def __init__(self, request_file: Path | None = None) -> None:
        self.requested = threading.Event()
        self.request_file = request_file
        self.exit_code = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.exit_code = 128 + signum
        self.requested.set()
        log.warning(
            "stopping after the stage in flight (%s); press Ctrl-C again to stop now",
            signal.Signals(signum).name,
        )

    def install(self) -> Stopper:
        """Take over SIGINT and SIGTERM. Call again after `ray.init`, whose core worker puts in
        a SIGTERM handler of its own that aborts the process."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def check(self) -> None:
        if self.request_file is not None and self.request_file.exists():
            self.request_file.unlink(missing_ok=True)
            log.warning("stop requested by `selfloop stop`")
            self.requested.set()
        if self.requested.is_set():
            raise StopRequested(self.exit_code)
