"""The plots of an evaluation (confusion matrix, sample grid), drawn the same for a run's test split and for
an exported artifact: shared by training and the runtime, so it sits below both. matplotlib on first use."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from tledge.plots import closed_on_error, pyplot as _pyplot, save_figure as _save_figure


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
    with closed_on_error(fig):
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
    with closed_on_error(fig):
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
    return _save_figure(fig, path)
