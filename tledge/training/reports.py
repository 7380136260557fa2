"""Training reports: JSON, the k-fold table and the metrics table. The history CSV (history.py), the plots
(report_plots.py) and the fit diagnosis (diagnosis.py) are modules of their own, reachable from here too.
Pure functions over plain data (lists of dicts, numpy arrays); no torch; every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tledge.atomic import plain as _plain
from tledge.atomic import write_json  # noqa: F401 - the one JSON writer, also reachable as reports.write_json
from tledge.table import format_table
# The parts live in their own modules; their public names are kept reachable as reports.<name>.
from tledge.training.diagnosis import VERDICTS, diagnose_fit  # noqa: F401
from tledge.training.history import (  # noqa: F401
    HISTORY_COLUMNS, _missing, best_epoch_index, read_history_csv, write_history_csv)
from tledge.eval_plots import plot_confusion_matrix, plot_samples  # noqa: F401
from tledge.metrics import metrics_markdown, per_class_table  # noqa: F401
from tledge.training.report_plots import plot_curves  # noqa: F401

KFOLD_COLUMNS = ("fold", "val_acc", "val_loss", "test_acc", "train_time_s", "best_epoch")


# --------------------------------------------------------------------------------------------- JSON / CSV
def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------- tables
def kfold_table(fold_rows: Sequence[dict]) -> tuple[list[dict], dict]:
    """Per-fold rows plus a summary, for `format_table(rows)` and for JSON.

    Returns (rows, summary). rows: one dict per fold with KFOLD_COLUMNS (test_acc only when some fold
    has it), then a last display row whose cells are strings "mean ± std" ("0.912 ± 0.013"; losses and
    accuracies with 3 decimals, times and epochs with 1). summary: {metric: {"mean", "std", "n"}} with
    numbers. std is the SAMPLE standard deviation (ddof=1), as the studies report it over k folds; with a
    single fold it is None. A fold missing a metric is left out of that metric's mean.
    """
    has_test = any(not _missing(r.get("test_acc")) for r in fold_rows)
    columns = [c for c in KFOLD_COLUMNS if c != "test_acc" or has_test]
    rows = [{c: (None if _missing(r.get(c)) else _plain(r.get(c))) for c in columns} for r in fold_rows]
    summary: dict = {}
    display: dict = {"fold": "mean ± std"}
    for column in columns[1:]:
        values = np.array([r[column] for r in rows if r[column] is not None], dtype=np.float64)
        if values.size == 0:
            display[column] = None
            continue
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if values.size > 1 else None
        summary[column] = {"mean": mean, "std": std, "n": int(values.size)}
        digits = 1 if column in ("train_time_s", "best_epoch") else 3
        display[column] = f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
    return rows + [display], summary
