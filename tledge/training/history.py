"""A run's history: history.csv (one row per epoch, exact floats) and reading its curves (columns, the
best epoch as the fit loop chooses it). Accuracies are fractions in [0, 1]; a history logged in percent
(any value above 1) is read as percent."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tledge.atomic import atomic_write_bytes

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s")


def write_history_csv(path: str | Path, rows: Sequence[dict]) -> Path:
    """One row per epoch, HISTORY_COLUMNS first, then any extra keys the rows carry. Missing → empty cell.

    Floats are written with repr, so read_history_csv gives back exactly the same numbers.
    """
    extras = [k for row in rows for k in row if k not in HISTORY_COLUMNS]
    columns = list(HISTORY_COLUMNS) + list(dict.fromkeys(extras))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if _missing(row.get(k)) else _csv_cell(row.get(k)) for k in columns])
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


def read_history_csv(path: str | Path) -> list[dict]:
    """Rows as dicts: `epoch` an int, other numbers floats, empty cells None, text left as text."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: _parse_cell(k, v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _csv_cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _parse_cell(key: str, text: str | None) -> Any:
    if text is None or text == "":
        return None
    if key == "epoch":
        return int(float(text))
    try:
        return float(text)
    except ValueError:
        return text


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _column(rows: Sequence[dict], key: str) -> np.ndarray:
    """One history column as float64, NaN where a row lacks it."""
    return np.array([np.nan if _missing(r.get(key)) else float(r[key]) for r in rows], dtype=np.float64)


def _accuracy_columns(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    train_acc, val_acc = _column(rows, "train_acc"), _column(rows, "val_acc")
    both = np.concatenate([train_acc, val_acc])
    if both.size and np.nanmax(np.where(np.isnan(both), 0.0, both)) > 1.0:  # logged in percent
        train_acc, val_acc = train_acc / 100.0, val_acc / 100.0
    return train_acc, val_acc


def best_epoch_index(rows: Sequence[dict]) -> int | None:
    """Index of the best validation epoch, chosen as the fit loop does: highest val accuracy, ties to the
    lower val loss; by lowest val loss when there is no val accuracy. None without validation numbers."""
    _, val_acc = _accuracy_columns(rows)
    val_loss = _column(rows, "val_loss")
    if not np.all(np.isnan(val_acc)):
        top = np.nanmax(val_acc)
        ties = np.flatnonzero(val_acc == top)
        losses = np.where(np.isnan(val_loss[ties]), np.inf, val_loss[ties])
        return int(ties[int(np.argmin(losses))])
    if not np.all(np.isnan(val_loss)):
        return int(np.nanargmin(val_loss))
    return None
