"""Progress bars for long work (trunk caching, training epochs, folder predict), drawn by tqdm on a
terminal and silent otherwise (logs, CI, pipes), so redirected output stays clean."""

from __future__ import annotations

import sys
from typing import IO


def progress_bar(total: int | None, label: str, unit: str = "batch", *, stream: IO[str] | None = None,
                 enabled: bool | None = None):
    """A tqdm bar (`.update(n)`, `.close()`, also a context manager) on `stream` (stderr), disabled unless
    it is a terminal; it disappears when closed."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    if enabled is None:
        enabled = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, desc=f"  {label}", unit=unit, file=stream, disable=not enabled, leave=False,
                dynamic_ncols=True)
