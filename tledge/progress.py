"""Progress bars for long work (caching, calibration, folder passes): tqdm on a terminal, silent otherwise
(logs and CI output stay clean)."""

from __future__ import annotations

import sys


def progress_bar(total: int, label: str, unit: str = "batch"):
    """A context manager with `.update(n)`; draws only when stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit=unit, leave=False, dynamic_ncols=True,
                disable=not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()))
