"""The one matplotlib setup for every plot (training curves, confusion matrices, sweeps, bench): pyplot on
the Agg backend unless the caller already uses pyplot, and figures published atomically, then closed."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from tledge.atomic import atomic_write_with


def pyplot():
    """pyplot on the Agg backend. If the caller already imported pyplot (a notebook), keep its backend:
    switching would close the caller's open figures."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Render to a temp file beside `path` (format given explicitly: the temp name ends in .tmp), publish
    it atomically, and close the figure whatever happens."""
    plt = pyplot()
    path = Path(path)
    try:
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


@contextmanager
def closed_on_error(fig):
    """Draw inside this block: a figure whose drawing fails is closed (pyplot keeps every open figure alive)."""
    try:
        yield fig
    except BaseException:
        pyplot().close(fig)
        raise
