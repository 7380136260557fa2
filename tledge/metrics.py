"""Classification metrics, their tables, and latency statistics (numpy only, so the runtime can use them without
torch)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tledge.table import format_table


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    y_true = np.asarray(y_true)
    return float(np.mean(y_true == np.asarray(y_pred))) if y_true.size else 0.0


def topk_accuracy(logits: np.ndarray, y_true: Sequence[int], k: int) -> float:
    """Fraction of rows whose true class is among the k highest logits."""
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        return 0.0
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean((top == y_true[:, None]).any(axis=1)))


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]
) -> dict:
    """Per-class precision/recall/F1/support plus macro and weighted averages, and the confusion matrix.

    A class never predicted has precision 0 (not NaN), a class with no samples recall 0, as sklearn's
    `zero_division=0`. Macro averages, as sklearn's, are over the classes that occur (in the labels or the
    predictions): a class with no images and never predicted is not counted as an F1 of 0; `unmeasured`
    names those classes.
    """
    num_classes = len(class_names)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    true_pos = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(num_classes), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)
    total = support.sum()
    weights = support / total if total > 0 else np.zeros(num_classes)
    occurs = (support > 0) | (predicted > 0)
    if not occurs.any():
        occurs[:] = True
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(true_pos.sum() / total) if total > 0 else 0.0,
        "per_class": per_class,
        "macro": {
            "precision": float(precision[occurs].mean()),
            "recall": float(recall[occurs].mean()),
            "f1": float(f1[occurs].mean()),
        },
        "unmeasured": [name for i, name in enumerate(class_names) if not occurs[i]],
        "weighted": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1": float((f1 * weights).sum()),
        },
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
        "num_samples": int(total),
    }


def latency_stats(milliseconds: Sequence[float], items_per_sample: int = 1) -> dict:
    """p50/p90/p99/mean/std/min/max of per-call latencies in ms, and throughput in items per second.

    `items_per_sample` is the batch size: FPS counts images, not calls.
    """
    values = np.asarray(milliseconds, dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    mean = float(values.mean())
    return {
        "count": int(values.size),
        "mean_ms": mean,
        "std_ms": float(values.std()),
        "min_ms": float(values.min()),
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
        "fps": float(1000.0 * items_per_sample / mean) if mean > 0 else float("inf"),
    }


def per_class_table(report: dict) -> str:
    """Precision, recall, F1 and support per class, as the eval commands print it."""
    rows = [{"class": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in vals.items()}}
            for name, vals in report["per_class"].items()]
    return format_table(rows, ["class", "precision", "recall", "f1", "support"])


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
