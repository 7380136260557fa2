"""Training reports: history CSV, JSON, curves, confusion matrix, sample grid, fit diagnosis, k-fold table.

Pure functions over plain data (lists of dicts, numpy arrays); no torch. matplotlib is imported lazily
with the Agg backend (so a headless Jetson or CI box never needs a display), every figure is closed after
saving, and every file is written atomically (a kill mid-write leaves the previous good file).

Accuracies are fractions in [0, 1]; a history logged in percent (any value above 1) is read as percent.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tledge.atomic import atomic_write_bytes, write_json  # noqa: F401 - the one JSON writer, used as reports.write_json
from tledge.atomic import plain as _plain
from tledge.plots import pyplot as _pyplot, save_figure as _save_figure  # the one plot setup
from tledge.table import format_table

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s")
KFOLD_COLUMNS = ("fold", "val_acc", "val_loss", "test_acc", "train_time_s", "best_epoch")
VERDICTS = ("good fit", "overfitting", "underfitting", "too few epochs")

# diagnose_fit thresholds (see its docstring)
OVERFIT_GAP = 0.15  # final train_acc − val_acc above this: overfitting
PREPROCESSING_GAP = 0.5  # a gap this large is more often a train/eval preprocessing mismatch than overfitting
PREPROCESSING_HINT = "check that evaluation uses the same preprocessing as training"
UNDERFIT_FRACTION = 0.6  # final train acc below chance + 0.6·(1 − chance): underfitting
MIN_LOSS_DROP = 0.10  # train loss fell less than 10% of its first value: underfitting
VAL_RISE_EPOCHS = 2  # val loss above its minimum for this many epochs while train loss fell: overfitting
VAL_RISE_MIN = 0.02  # ... and the last val loss at least 2% above the minimum (not noise)
STILL_IMPROVING = 0.10  # last VAL_RISE_EPOCHS epochs gave ≥10% of the total val-loss drop: too few epochs
MIN_EPOCHS = 3


# --------------------------------------------------------------------------------------------- JSON / CSV
def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


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


# --------------------------------------------------------------------------------------------- plotting
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


def plot_curves(rows: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """Two panels, loss and accuracy per epoch, train vs val, with the best validation epoch marked
    (dashed line in both panels, star on the val curves)."""
    plt = _pyplot()
    epochs = np.array([r["epoch"] for r in rows], dtype=np.float64)
    train_acc, val_acc = _accuracy_columns(rows)
    series = {
        "loss": (_column(rows, "train_loss"), _column(rows, "val_loss")),
        "accuracy": (train_acc, val_acc),
    }
    best = best_epoch_index(rows) if rows else None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    try:
        for ax, (label, (train, val)) in zip(axes, series.items()):
            marker = "o-" if len(rows) <= 30 else "-"
            ax.plot(epochs, train, marker, color="tab:blue", markersize=3, label=f"train {label}")
            ax.plot(epochs, val, marker, color="tab:orange", markersize=3, label=f"val {label}")
            if best is not None:
                ax.axvline(epochs[best], color="grey", linestyle="--", linewidth=1,
                           label=f"best val (epoch {int(epochs[best])})")
                if not np.isnan(val[best]):
                    ax.plot([epochs[best]], [val[best]], "*", color="tab:red", markersize=14, zorder=5)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_title(label)
            ax.grid(alpha=0.3)
            if len(rows) and len(rows) <= 20:
                ax.set_xticks(epochs)
            ax.legend(fontsize=8)
        lowest = np.nanmin(np.append(np.concatenate(series["accuracy"]), 1.0))
        axes[1].set_ylim(max(0.0, min(lowest, 0.9) - 0.05), 1.02)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save_figure(fig, path)


def _short(name: str, limit: int) -> str:
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Counts and row-normalised percentages side by side (rows: true class, columns: predicted).

    Every cell is annotated; figure and font size scale with the class count, tick labels are rotated,
    so 2 to 20 classes stay readable (more still plot, without cell numbers past 30).
    """
    matrix = np.asarray(matrix)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not match {n} class names")
    plt = _pyplot()
    totals = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(matrix * 100.0, totals, out=np.zeros(matrix.shape), where=totals > 0)
    names = [_short(c, 18) for c in class_names]
    side = max(4.5, 0.5 * n + 2.0)
    fontsize = max(7.0, min(11.0, 13.0 - 0.3 * n))
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.5, side))
    try:
        panels = ((axes[0], matrix, "counts", lambda v: f"{int(v)}", None),
                  (axes[1], percent, "row-normalised (% of true class)",
                   (lambda v: f"{v:.0f}") if n > 8 else (lambda v: f"{v:.1f}"), 100.0))
        for ax, values, title, fmt, vmax in panels:
            peak = vmax if vmax is not None else max(float(values.max()) if values.size else 0.0, 1.0)
            image = ax.imshow(values, cmap="Blues", vmin=0, vmax=peak)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(title)
            ax.set_xticks(range(n))
            ax.set_yticks(range(n))
            ax.set_xticklabels(names, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center",
                               fontsize=fontsize)
            ax.set_yticklabels(names, fontsize=fontsize)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            if n <= 30:
                for i in range(n):
                    for j in range(n):
                        value = float(values[i, j])
                        colour = "white" if value > peak * 0.5 else "black"
                        ax.text(j, i, fmt(value), ha="center", va="center", color=colour, fontsize=fontsize)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save_figure(fig, path)


def plot_samples(images: Sequence[np.ndarray], true_idx: Sequence[int], pred_idx: Sequence[int],
                 confidences: Sequence[float], class_names: Sequence[str], path: str | Path,
                 max_images: int = 16) -> Path:
    """A grid of uint8 RGB (or grey) images titled "true / pred (conf%)", at most `max_images`, in the
    order given. Mistakes get a red title and a red frame; correct ones a green title and no frame.
    `confidences` are probabilities of the predicted class, in [0, 1]."""
    count = min(len(images), len(true_idx), len(pred_idx), len(confidences), max_images)
    if count == 0:
        raise ValueError("plot_samples needs at least one image")
    plt = _pyplot()
    cols = min(4 if count <= 16 else 6, count)
    grid_rows = math.ceil(count / cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(2.8 * cols, 3.0 * grid_rows), squeeze=False)
    try:
        for k, ax in enumerate(axes.flat):
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= count:
                ax.axis("off")
                continue
            image = np.asarray(images[k])
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            true, pred = int(true_idx[k]), int(pred_idx[k])
            wrong = true != pred
            ax.set_title(f"{_short(class_names[true], 14)} / {_short(class_names[pred], 14)} "
                         f"({100.0 * float(confidences[k]):.0f}%)",
                         color="red" if wrong else "green", fontsize=9,
                         fontweight="bold" if wrong else "normal")
            for spine in ax.spines.values():
                spine.set_visible(wrong)
                spine.set_edgecolor("red")
                spine.set_linewidth(4)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save_figure(fig, path)


# --------------------------------------------------------------------------------------------- diagnosis
def diagnose_fit(rows: Sequence[dict], num_classes: int | None = None) -> dict:
    """Read the training curves the way a supervisor would, and say so in one sentence.

    Returns {"verdict", "since_epoch", "reason", "gap", "best_epoch", "warnings"} where gap is the final
    train_acc − val_acc (None without accuracies) and best_epoch the best validation epoch. Rules, first
    match wins:

    1. No epochs → "too few epochs".
    2. "overfitting" when either
       a. the final gap exceeds 0.15; since_epoch = first epoch of the final run of epochs whose gap
          stayed above 0.15 (the epoch the gap first exceeded it for good), or
       b. the val loss stayed above its minimum for ≥ 2 epochs after it, ends ≥ 2% above it, and the
          train loss kept falling meanwhile; since_epoch = the epoch after the minimum.
       Both can hold; since_epoch is then the earlier one. Checked before the epoch count, because a
       huge gap after one epoch is already worth shouting about.
    3. Fewer than 3 epochs → "too few epochs" (too short to judge).
    4. "too few epochs" when training is still improving: the last epoch has the lowest val loss and the
       last 2 epochs gave ≥ 10% of the whole val-loss drop (train loss when there is no val loss).
    5. "underfitting" when the final train accuracy is below chance + 0.6·(1 − chance), chance being
       1/num_classes (0 without num_classes, i.e. below 0.6), or the train loss fell < 10% from epoch 1.
    6. Otherwise "good fit".
    Whatever the verdict, a gap above 0.5 appends "check that evaluation uses the same preprocessing as
    training" to the reason (and to warnings): 89% train / 18% val is rarely plain overfitting, it is
    usually a different resize/normalisation at evaluation time.
    """
    result: dict = {"verdict": "good fit", "since_epoch": None, "reason": "", "gap": None, "best_epoch": None,
                    "warnings": []}
    if not rows:
        return {**result, "verdict": "too few epochs", "reason": "no epochs were recorded"}
    epochs = [int(r["epoch"]) for r in rows]
    train_loss, val_loss = _column(rows, "train_loss"), _column(rows, "val_loss")
    train_acc, val_acc = _accuracy_columns(rows)
    gaps = train_acc - val_acc
    gap = None if np.isnan(gaps[-1]) else round(float(gaps[-1]), 6)
    best = best_epoch_index(rows)
    result["gap"] = gap
    result["best_epoch"] = None if best is None else epochs[best]

    verdict, since, reason = _overfitting(epochs, train_loss, val_loss, train_acc, val_acc, gaps)
    if verdict is None:
        verdict, since, reason = _short_or_underfit(epochs, train_loss, val_loss, train_acc, num_classes)
    if verdict is None:
        verdict = "good fit"
        reason = (f"final train accuracy {_fmt(train_acc[-1])} and val accuracy {_fmt(val_acc[-1])} "
                  f"(gap {_fmt(gap)}), val loss {_fmt(val_loss[-1], 4)} not rising after "
                  f"{len(rows)} epochs")
    if gap is not None and gap > PREPROCESSING_GAP:
        warning = (f"a train/val accuracy gap of {gap:.2f} is rarely plain overfitting: "
                   f"{PREPROCESSING_HINT}")
        result["warnings"].append(warning)
        reason = f"{reason}; {warning}"
    result.update(verdict=verdict, since_epoch=since, reason=reason)
    return result


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _overfitting(epochs, train_loss, val_loss, train_acc, val_acc, gaps):
    reasons, starts = [], []
    if not np.isnan(gaps[-1]) and gaps[-1] > OVERFIT_GAP:
        start = len(gaps) - 1
        while start > 0 and gaps[start - 1] > OVERFIT_GAP:
            start -= 1
        starts.append(epochs[start])
        reasons.append(f"final train accuracy {train_acc[-1]:.3f} vs val accuracy {val_acc[-1]:.3f} "
                       f"(gap {gaps[-1]:.3f} > {OVERFIT_GAP}, above it since epoch {epochs[start]})")
    if not np.all(np.isnan(val_loss)):
        low = int(np.nanargmin(val_loss))
        after = val_loss[low + 1:]
        rose = (after.size >= VAL_RISE_EPOCHS and np.all(after > val_loss[low])
                and val_loss[-1] >= val_loss[low] * (1 + VAL_RISE_MIN))
        if rose and train_loss[-1] < train_loss[low]:
            starts.append(epochs[low + 1])
            reasons.append(f"val loss rose from {val_loss[low]:.4f} at epoch {epochs[low]} to "
                           f"{val_loss[-1]:.4f} at epoch {epochs[-1]} while train loss fell from "
                           f"{train_loss[low]:.4f} to {train_loss[-1]:.4f}")
    if not reasons:
        return None, None, ""
    return "overfitting", min(starts), " and ".join(reasons)


def _short_or_underfit(epochs, train_loss, val_loss, train_acc, num_classes):
    if len(epochs) < MIN_EPOCHS:
        return "too few epochs", None, f"only {len(epochs)} epoch(s): at least {MIN_EPOCHS} are needed to judge the fit"
    curve, name = (val_loss, "val loss") if not np.any(np.isnan(val_loss)) else (train_loss, "train loss")
    if not np.any(np.isnan(curve)):
        total_drop = curve[0] - curve.min()
        recent_drop = curve[-1 - VAL_RISE_EPOCHS] - curve[-1]
        if curve[-1] <= curve.min() and total_drop > 0 and recent_drop >= STILL_IMPROVING * total_drop:
            return "too few epochs", None, (
                f"{name} is still falling at the last epoch ({curve[-1 - VAL_RISE_EPOCHS]:.4f} at epoch "
                f"{epochs[-1 - VAL_RISE_EPOCHS]} to {curve[-1]:.4f} at epoch {epochs[-1]}, "
                f"{100 * recent_drop / total_drop:.0f}% of its whole drop): train longer")
    chance = 1.0 / num_classes if num_classes else 0.0
    floor = chance + UNDERFIT_FRACTION * (1.0 - chance)
    why = []
    if not np.isnan(train_acc[-1]) and train_acc[-1] < floor:
        why.append(f"final train accuracy {train_acc[-1]:.3f} is below {floor:.3f} "
                   f"({UNDERFIT_FRACTION:.0%} of the way from chance {chance:.3f} to 1)")
    if not np.isnan(train_loss[0]) and not np.isnan(train_loss[-1]) and train_loss[0] > 0:
        drop = (train_loss[0] - train_loss[-1]) / train_loss[0]
        if drop < MIN_LOSS_DROP:
            why.append(f"train loss fell only {100 * drop:.0f}% ({train_loss[0]:.4f} to {train_loss[-1]:.4f}) "
                       f"in {len(epochs)} epochs")
    if why:
        return "underfitting", None, " and ".join(why) + ": unfreeze more layers, raise the learning rate or train longer"
    return None, None, ""


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


def metrics_markdown(report: dict, digits: int = 3) -> str:
    """A Markdown table from metrics.classification_report's dict: per-class precision/recall/F1/support,
    macro and weighted averages (support = all samples), then the overall accuracy line."""
    rows = [{"class": _markdown_text(name), **_floats(vals)} for name, vals in report["per_class"].items()]
    total = int(report.get("num_samples", sum(v["support"] for v in report["per_class"].values())))
    rows.append({"class": "**macro avg**", **_floats(report["macro"]), "support": total})
    rows.append({"class": "**weighted avg**", **_floats(report["weighted"]), "support": total})
    table = format_table(rows, ["class", "precision", "recall", "f1", "support"], floatfmt=f".{digits}f",
                         markdown=True)
    return f"{table}\n\n**accuracy**: {report['accuracy']:.{digits}f} on {total} samples"


def _floats(values: dict) -> dict:
    """numpy floats → float, so format_table applies its float format to them."""
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in values.items()}


def _markdown_text(name: Any) -> str:
    return str(name).replace("|", "\\|")
