"""Sweep results: one row per cell, read back from the cells' own metrics.json / history.csv / kfold.json
(k-fold cells as mean ± sample std over folds), written as results.csv/.json/.md and plotted as results.png."""

from __future__ import annotations

import logging
import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from tledge.atomic import atomic_write_bytes
from tledge.logs import log_result
from tledge.plots import closed_on_error, pyplot, save_figure
from tledge.table import format_table
from tledge.training import reports
from tledge.training.rundir import CONFIG_FILE, HISTORY_FILE, METRICS_FILE
from tledge.training.sweep_grid import AXIS_TYPES, Cell

log = logging.getLogger(__name__)

KFOLD_FILE = "kfold.json"  # tledge.training.kfold.KFOLD_JSON (not imported: that module imports torch)
RESULT_FILES = ("results.csv", "results.md", "results.json", "results.png")

# The numbers every result row carries (k-fold rows: the mean over folds, and a <name>_std column).
METRICS = ("trainable_params", "total_params", "best_epoch", "epochs_run", "train_time_s", "train_loss",
           "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
CSV_COLUMNS = ("cell", "status", *AXIS_TYPES, "k", *METRICS, *(f"{m}_std" for m in METRICS), "run_dir", "error",
               "chosen")
# results.md: (column title, row key, decimals); None = as is.
TABLE_METRICS = (("trainable", "trainable_params", None), ("best epoch", "best_epoch", 1),
                 ("time s", "train_time_s", 1), ("train loss", "train_loss", 4), ("train acc", "train_acc", 4),
                 ("val loss", "val_loss", 4), ("val acc", "val_acc", 4), ("test loss", "test_loss", 4),
                 ("test acc", "test_acc", 4))
TABLE_LEGEND = ("train loss/acc: last epoch; val loss/acc: best epoch (the weights tested); test: best.pt on "
                "the test split; time: training + validation seconds. k-fold cells: mean ± std over folds.")
CHOSEN_LEGEND = ("chosen (*): the best val acc, the only number that chooses; test acc is reported for every "
                 "cell but not used for choosing.")



def cell_state(cell: Cell, cell_dir: Path) -> str:
    """'done' (results there), 'started' (resumable), or 'new'."""
    if cell.config.kfold:
        if (cell_dir / KFOLD_FILE).is_file():
            return "done"
        return "started" if (cell_dir / "splits.json").is_file() and (cell_dir / CONFIG_FILE).is_file() else "new"
    if (cell_dir / METRICS_FILE).is_file():
        return "done"
    return "started" if (cell_dir / "last.pt").is_file() else "new"


# --------------------------------------------------------------------------------------------- results
def _run_numbers(run_dir: Path) -> dict:
    """One run's numbers, read from its metrics.json and history.csv."""
    metrics = reports.read_json(run_dir / METRICS_FILE)
    history = reports.read_history_csv(run_dir / HISTORY_FILE) if (run_dir / HISTORY_FILE).is_file() else []
    best_epoch = metrics.get("best_epoch")
    best = history[best_epoch - 1] if history and best_epoch and best_epoch <= len(history) else {}
    last = history[-1] if history else {}
    return {
        "trainable_params": metrics.get("trainable_params"),
        "total_params": metrics.get("total_params"),
        "best_epoch": best_epoch,
        "epochs_run": metrics.get("epochs_run"),
        "train_time_s": metrics.get("train_time_s"),
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "val_loss": best.get("val_loss"),
        "val_acc": metrics.get("best_val_acc"),
        "test_loss": metrics.get("loss"),
        "test_acc": metrics.get("accuracy"),
    }


def _mean_std(values: list) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1, as kfold.json reports it); None where there is nothing to average."""
    numbers = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not numbers:
        return None, None
    mean = sum(numbers) / len(numbers)
    if len(numbers) < 2:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))


def cell_result(cell: Cell, cell_dir: Path, status: str = "pending", error: str | None = None) -> dict:
    """One results row: the cell's options, then numbers read from its files. A cell whose results exist
    is 'done' whatever `status` says (e.g. finished by an earlier invocation)."""
    row: dict[str, Any] = {"cell": cell.name, "status": status}
    row.update({axis: getattr(cell.config, axis) for axis in AXIS_TYPES})
    row["lr"] = cell.config.learning_rate()  # the rate the run used (the optimizer's usual one when unset)
    row["k"] = cell.config.kfold or None
    row.update({m: None for m in METRICS})
    row.update({f"{m}_std": None for m in METRICS})
    row["run_dir"] = str(cell_dir)
    row["error"] = error
    if cell_state(cell, cell_dir) != "done":
        if status == "done":  # a run that finished without results (e.g. interrupted before epoch 1)
            row["status"] = "incomplete"
        elif status == "pending" and (cell_dir / "last.pt").is_file():
            row["status"] = "started"
        return row
    row["status"], row["error"] = "done", None
    if not cell.config.kfold:
        row.update(_run_numbers(cell_dir))
        return row
    kfold = reports.read_json(cell_dir / KFOLD_FILE)
    folds = [_run_numbers(cell_dir / f"fold{f['fold']}") for f in kfold["folds"]]
    row["k"] = len(folds)
    for metric in METRICS:
        row[metric], row[f"{metric}_std"] = _mean_std([f[metric] for f in folds])
    return row


def _csv_text(rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else (repr(row[k]) if isinstance(row[k], float) else row[k])
                         for k in CSV_COLUMNS})
    return buffer.getvalue()


def _shown_axes(rows: Sequence[dict]) -> list[str]:
    """Table columns for the options: model, freeze, optimizer, lr, epochs always; others when they vary."""
    always = ["model", "freeze", "optimizer", "lr", "epochs"]
    varying = [a for a in AXIS_TYPES if a not in always and len({repr(r.get(a)) for r in rows}) > 1]
    return always + varying


def _display(value: Any, std: Any, decimals: int | None) -> Any:
    if value is None:
        return None
    if decimals is None:
        return f"{int(round(value)):,}" if isinstance(value, (int, float)) else value
    if isinstance(value, int) and std is None:
        return value
    text = f"{value:.{decimals}f}"
    return text if std is None else f"{text} ± {std:.{decimals}f}"


def results_table(rows: Sequence[dict]) -> list[dict]:
    """Display rows for format_table: one per cell, numbers rounded, k-fold cells as 'mean ± std'."""
    axes = _shown_axes(rows)
    any_kfold = any(r.get("k") for r in rows)
    table = []
    for row in rows:
        shown: dict[str, Any] = {"cell": row["cell"]}
        for axis in axes:
            value = row.get(axis)
            shown[axis] = format(value, "g") if isinstance(value, float) else value
        if any_kfold:
            shown["folds"] = row.get("k")
        for title, key, decimals in TABLE_METRICS:
            shown[title] = _display(row.get(key), row.get(f"{key}_std"), decimals)
        if any("chosen" in r for r in rows):
            shown["chosen"] = "*" if row.get("chosen") else ""
        shown["status"] = row["status"] if row["status"] == "done" else f"{row['status']}" + (
            f": {row['error']}" if row.get("error") else "")
        table.append(shown)
    return table


def write_results(rows: Sequence[dict], sweep_dir: str | Path, plot: bool = True,
                  best: dict | None = None) -> list[Path]:
    """results.csv (every number, exact), results.json, results.md (the study table) and results.png.
    `best`: the row chosen on val acc (a study's), named in results.json/.md with its export command."""
    sweep_dir = Path(sweep_dir)
    atomic_write_bytes(sweep_dir / "results.csv", _csv_text(rows).encode("utf-8"))
    chosen = None if best is None else {"cell": best["cell"], "val_acc": best.get("val_acc"),
                                        "test_acc": best.get("test_acc"), "chosen_by": "val_acc",
                                        "export": f"tledge export {best['run_dir']}"}
    reports.write_json(sweep_dir / "results.json", {"sweep": str(sweep_dir), "columns": list(CSV_COLUMNS),
                                                    "cells": list(rows), "best": chosen})
    table = format_table(results_table(rows), markdown=True)
    legend = TABLE_LEGEND + (" " + CHOSEN_LEGEND if any("chosen" in r for r in rows) else "")
    text = f"# Sweep {sweep_dir.name}\n\n{table}\n\n{legend}\n"
    if chosen is not None:
        text += f"\nBest cell (by val acc): {chosen['cell']}; export it with: `{chosen['export']}`\n"
    atomic_write_bytes(sweep_dir / "results.md", text.encode("utf-8"))
    written = [sweep_dir / name for name in RESULT_FILES[:3]]
    if plot:
        written.append(plot_results(rows, sweep_dir / "results.png", title=f"{sweep_dir.name}: {len(rows)} cells"))
    return written


def plot_results(rows: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """A bar per cell: validation accuracy (what chooses; the test split must not), with ± std error bars
    for k-fold cells; a cell without results gets an empty slot labelled with its status."""
    plt = pyplot()
    key = "val_acc"
    names = [r["cell"] for r in rows]
    values = [r.get(key) if r.get(key) is not None else 0.0 for r in rows]
    errors = [r.get(f"{key}_std") or 0.0 for r in rows] if any(r.get("k") for r in rows) else None
    colours = ["tab:blue" if r.get("k") else "tab:green" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 2.0), 4.5))
    with closed_on_error(fig):
        positions = list(range(len(rows)))
        ax.bar(positions, values, yerr=errors, capsize=4, color=colours)
        for x, row, value in zip(positions, rows, values):
            label = f"{value:.3f}" if row.get(key) is not None else row["status"]
            ax.text(x, value + 0.01, label, ha="center", va="bottom", fontsize=8, rotation=90 if len(rows) > 12 else 0)
        ax.set_xticks(positions)
        ax.set_xticklabels(names, rotation=45 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center",
                           fontsize=8)
        ax.set_ylabel(key.replace("_", " ") + (" (mean ± std over folds)" if any(r.get("k") for r in rows) else ""))
        ax.set_ylim(0, 1.1)
        ax.grid(axis="y", alpha=0.3)
        if title:
            ax.set_title(title)
        fig.tight_layout()
    return save_figure(fig, path)


def _log_summary(rows: Sequence[dict], sweep_dir: Path) -> None:
    log_result(log, "\n" + format_table(results_table(rows)))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        log.warning(f"{len(failed)} of {len(rows)} cells failed: " + "; ".join(f"{r['cell']}: {r['error']}" for r in failed))
    log_result(log, f"results in {sweep_dir} (results.md, results.csv, results.json, results.png)")
