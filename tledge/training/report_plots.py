"""Training plots: loss/accuracy curves, confusion matrix, a grid of sample predictions (mistakes first).
matplotlib on the Agg backend (tledge.plots), figures written atomically and closed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tledge.plots import closed_on_error, pyplot as _pyplot, save_figure as _save_figure
from tledge.training.history import _accuracy_columns, _column, best_epoch_index

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
    with closed_on_error(fig):
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
    return _save_figure(fig, path)
