"""Progress bars for long work (trunk caching, training epochs, folder predict), drawn by tqdm on a
terminal and silent otherwise (logs, CI, pipes), so redirected output stays clean. A bar is progress, so
it follows tledge's INFO lines too (tledge.logs.progress_shown): none under `tledge -q`."""

from __future__ import annotations

import sys
from typing import IO


def progress_bar(total: int | None, label: str, unit: str = "batch", *, stream: IO[str] | None = None,
                 enabled: bool | None = None):
    """A tqdm bar (`.update(n)`, `.close()`, also a context manager) on `stream` (stderr), disabled unless
    it is a terminal and tledge's INFO records are shown; it disappears when closed."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    if enabled is None:
        from tledge.logs import progress_shown

        enabled = hasattr(stream, "isatty") and stream.isatty() and progress_shown()
    return tqdm(total=total, desc=f"  {label}", unit=unit, file=stream, disable=not enabled, leave=False,
                dynamic_ncols=True)
