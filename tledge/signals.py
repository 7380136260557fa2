"""SIGTERM (docker stop, systemd, `kill`) handled as Ctrl-C is: the first one raises KeyboardInterrupt in the
main thread, so every job runs the same clean-up it runs for Ctrl-C (train: last.pt kept and the resume
command printed, a run folder with no checkpoint removed; predict and --serve: the summary printed;
export: temp files removed). The CLI then exits 128 + 15 = 143 instead of Ctrl-C's 130.

    with sigterm_as_interrupt() as stop:
        ...                      # a SIGTERM here raises KeyboardInterrupt
    stop.signum                  # signal.SIGTERM when that is what stopped it, else None

A second SIGTERM while the clean-up runs is ignored (a supervisor sends SIGKILL when it stops waiting).
Outside the main thread (no signal handlers there) the context does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Stop:
    signum: int | None = None

    @property
    def exit_code(self) -> int | None:
        """128 + the signal number (the shell's convention), when a signal stopped the job."""
        return None if self.signum is None else 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "Ctrl-C"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[Stop]:
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum, _frame):
        if stop.signum is None:
            stop.signum = signum
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
