"""Training reports: history CSV, fit diagnosis on hand-made histories, k-fold table, Markdown, JSON, PNGs."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from tledge import metrics
from tledge.table import format_table
from tledge.training import reports


def history(train_loss, train_acc, val_loss, val_acc):
    return [
        {"epoch": i + 1, "train_loss": tl, "train_acc": ta, "val_loss": vl, "val_acc": va, "lr": 1e-3,
         "epoch_time_s": 1.5, "images_per_s": 400.0}
        for i, (tl, ta, vl, va) in enumerate(zip(train_loss, train_acc, val_loss, val_acc))
    ]


GOOD = history([1.2, 0.7, 0.5, 0.45, 0.44], [0.5, 0.75, 0.85, 0.88, 0.89],
               [1.1, 0.7, 0.55, 0.52, 0.515], [0.55, 0.75, 0.82, 0.84, 0.845])
# val loss bottoms out at epoch 3, then rises for 3 epochs while train loss keeps falling; gap stays < 0.15
OVERFIT_LOSS = history([1.0, 0.6, 0.4, 0.3, 0.2, 0.1], [0.6, 0.75, 0.82, 0.86, 0.9, 0.93],
                       [0.9, 0.6, 0.5, 0.55, 0.6, 0.7], [0.6, 0.72, 0.78, 0.79, 0.79, 0.80])
# the 89% train / 18% val study: gaps 0.20, 0.10, 0.45, 0.71 → above 0.15 for good since epoch 3
MISMATCH = history([1.0, 0.6, 0.4, 0.3], [0.40, 0.55, 0.65, 0.89],
                   [2.0, 1.9, 1.85, 1.8], [0.20, 0.45, 0.20, 0.18])
UNDERFIT = history([2.3, 2.2, 2.1, 2.05, 2.02, 2.01], [0.15, 0.2, 0.25, 0.28, 0.3, 0.3],
                   [2.3, 2.2, 2.12, 2.08, 2.07, 2.07], [0.14, 0.19, 0.24, 0.26, 0.28, 0.28])
STILL_IMPROVING = history([2.0, 1.6, 1.2, 0.8], [0.4, 0.5, 0.6, 0.7], [2.0, 1.6, 1.2, 0.8], [0.4, 0.5, 0.6, 0.7])


def test_history_csv_round_trip(tmp_path):
    rows = history([0.1 + 0.2, 0.5], [1 / 3, 0.75], [0.7, None], [0.25, 0.5])
    rows[1]["extra_metric"] = np.float32(0.125)
    path = reports.write_history_csv(tmp_path / "run" / "history.csv", rows)
    back = reports.read_history_csv(path)
    assert list(back[0])[: len(reports.HISTORY_COLUMNS)] == list(reports.HISTORY_COLUMNS)
    assert back[0]["epoch"] == 1 and isinstance(back[0]["epoch"], int)
    assert back[0]["train_loss"] == 0.1 + 0.2  # exact: floats written with repr
    assert back[0]["train_acc"] == 1 / 3
    assert back[1]["val_loss"] is None
    assert back[1]["extra_metric"] == 0.125 and back[0]["extra_metric"] is None
    assert back[1]["lr"] == 1e-3
    assert not list(path.parent.glob("*.tmp"))


def test_diagnose_good_fit():
    d = reports.diagnose_fit(GOOD, num_classes=3)
    assert d["verdict"] == "good fit" and d["since_epoch"] is None
    assert d["gap"] == pytest.approx(0.89 - 0.845)
    assert d["best_epoch"] == 5 and not d["warnings"]


def test_diagnose_overfitting_from_rising_val_loss():
    d = reports.diagnose_fit(OVERFIT_LOSS, num_classes=3)
    assert d["verdict"] == "overfitting"
    assert d["since_epoch"] == 4  # the epoch after the val-loss minimum at epoch 3
    assert "0.5000 at epoch 3" in d["reason"] and "0.7000" in d["reason"]
    assert d["gap"] == pytest.approx(0.13)


def test_diagnose_large_gap_shouts_about_preprocessing():
    d = reports.diagnose_fit(MISMATCH, num_classes=5)
    assert d["verdict"] == "overfitting"
    assert d["since_epoch"] == 3  # gap above 0.15 since epoch 3 (epoch 1's excursion does not count)
    assert d["gap"] == pytest.approx(0.71)
    assert "same preprocessing as training" in d["reason"] and d["warnings"]
    # the same history logged in percent gives the same answer
    percent = [{**r, "train_acc": 100 * r["train_acc"], "val_acc": 100 * r["val_acc"]} for r in MISMATCH]
    assert reports.diagnose_fit(percent, 5)["gap"] == pytest.approx(0.71)
    # a gap of 0.2 is overfitting but no preprocessing hint
    mild = history([1.0, 0.6, 0.4], [0.5, 0.8, 0.95], [1.0, 0.8, 0.7], [0.5, 0.7, 0.75])
    d = reports.diagnose_fit(mild, 2)
    assert d["verdict"] == "overfitting" and d["since_epoch"] == 3 and "preprocessing" not in d["reason"]


def test_diagnose_underfitting():
    d = reports.diagnose_fit(UNDERFIT, num_classes=10)
    assert d["verdict"] == "underfitting" and d["since_epoch"] is None
    assert "0.300 is below 0.640" in d["reason"]  # chance 0.1 + 0.6 × 0.9
    # high accuracy, but the train loss barely moved
    flat = history([0.40, 0.39, 0.385, 0.38], [0.85] * 4, [0.42, 0.41, 0.41, 0.41], [0.84] * 4)
    d = reports.diagnose_fit(flat, num_classes=2)
    assert d["verdict"] == "underfitting" and "fell only 5%" in d["reason"]


def test_diagnose_too_few_epochs():
    assert reports.diagnose_fit([], 3)["verdict"] == "too few epochs"
    d = reports.diagnose_fit(GOOD[:2], 3)
    assert d["verdict"] == "too few epochs" and d["since_epoch"] is None and "2 epoch" in d["reason"]
    d = reports.diagnose_fit(STILL_IMPROVING, 3)
    assert d["verdict"] == "too few epochs" and "still falling" in d["reason"]
    json.dumps(d)  # plain JSON-able values


def test_kfold_table_mean_and_sample_std():
    folds = [
        {"fold": 1, "val_acc": 0.90, "val_loss": 0.30, "test_acc": 0.88, "train_time_s": 10.0, "best_epoch": 3},
        {"fold": 2, "val_acc": 0.92, "val_loss": 0.25, "test_acc": None, "train_time_s": 12.0, "best_epoch": 5},
        {"fold": 3, "val_acc": 0.94, "val_loss": 0.35, "test_acc": 0.90, "train_time_s": 14.0, "best_epoch": 4},
    ]
    rows, summary = reports.kfold_table(folds)
    assert len(rows) == 4 and rows[0]["val_acc"] == 0.90
    assert summary["val_acc"]["mean"] == pytest.approx(0.92)
    assert summary["val_acc"]["std"] == pytest.approx(0.02)  # ddof=1: sqrt((0.02² + 0 + 0.02²) / 2)
    assert summary["val_loss"]["std"] == pytest.approx(0.05)
    assert summary["test_acc"] == {"mean": pytest.approx(0.89), "std": pytest.approx(math.sqrt(2e-4)), "n": 2}
    assert rows[-1]["val_acc"] == "0.920 ± 0.020"
    assert rows[-1]["train_time_s"] == "12.0 ± 2.0" and rows[-1]["best_epoch"] == "4.0 ± 1.0"
    assert "0.920 ± 0.020" in format_table(rows, markdown=True)
    rows, summary = reports.kfold_table([{k: v for k, v in f.items() if k != "test_acc"} for f in folds])
    assert "test_acc" not in rows[0] and "test_acc" not in summary


def test_metrics_markdown_has_hand_computed_f1():
    # cat: P 2/2, R 2/3 → F1 0.800; dog: P 1/2, R 1/2 → 0.500; bird: P 1/2, R 1/1 → 0.667; macro 0.656
    report = metrics.classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["cat", "dog", "bird"])
    text = reports.metrics_markdown(report)
    lines = text.splitlines()
    assert lines[0].startswith("| class") and "f1" in lines[0]
    cat = next(line for line in lines if line.startswith("| cat"))
    assert "1.000" in cat and "0.667" in cat and "0.800" in cat and re.search(r"\|\s+3 \|$", cat)
    assert "0.500" in next(line for line in lines if line.startswith("| dog"))
    assert "0.656" in next(line for line in lines if "macro" in line)
    assert "weighted" in text and "**accuracy**: 0.667 on 6 samples" in text


def test_write_json_handles_numpy(tmp_path):
    data = {"f32": np.float32(0.5), "i64": np.int64(3), "arr": np.arange(3), "flag": np.bool_(True),
            "nan": float("nan"), "path": Path("a/b"), "tuple": (1, 2), np.int64(7): {"m": np.eye(2)}}
    path = reports.write_json(tmp_path / "out" / "m.json", data)
    text = path.read_text()
    assert text.startswith("{\n  \"f32\"")  # indent 2
    assert json.loads(text) == {"f32": 0.5, "i64": 3, "arr": [0, 1, 2], "flag": True, "nan": None,
                                "path": "a/b", "tuple": [1, 2], "7": {"m": [[1.0, 0.0], [0.0, 1.0]]}}
    assert reports.read_json(path)["i64"] == 3


def read_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert not list(path.parent.glob("*.tmp"))
    return image


def test_plot_curves(tmp_path):
    import matplotlib.pyplot as plt

    read_png(reports.plot_curves(OVERFIT_LOSS, tmp_path / "curves.png", title="resnet18 · exp"))
    read_png(reports.plot_curves(GOOD[:1], tmp_path / "one.png"))
    assert plt.get_fignums() == []  # figures closed


@pytest.mark.parametrize("num_classes", [2, 12])
def test_plot_confusion_matrix_and_samples(tmp_path, num_classes):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(num_classes)
    names = [f"class_{i}_with_a_long_name" for i in range(num_classes)]
    y_true = rng.integers(0, num_classes, 60)
    y_pred = np.where(rng.random(60) < 0.7, y_true, rng.integers(0, num_classes, 60))
    matrix = metrics.confusion_matrix(y_true, y_pred, num_classes)
    matrix[-1] = 0  # a class with no samples: row % is 0, not NaN
    read_png(reports.plot_confusion_matrix(matrix, names, tmp_path / "cm.png"))

    count = 20
    images = [rng.integers(0, 256, (32, 40, 3), dtype=np.uint8) for _ in range(count)]
    conf = rng.random(count)
    image = read_png(reports.plot_samples(images, y_true[:count], y_pred[:count], conf, names,
                                          tmp_path / "samples.png", max_images=num_classes))
    assert image.shape[2] in (3, 4)
    assert plt.get_fignums() == []
    with pytest.raises(ValueError):
        reports.plot_confusion_matrix(matrix, names[:-1], tmp_path / "bad.png")


def test_a_failed_drawing_leaves_no_open_figure():
    from tledge.plots import closed_on_error, pyplot

    plt = pyplot()
    before = plt.get_fignums()
    fig, _ = plt.subplots()
    with pytest.raises(RuntimeError, match="drawing failed"):
        with closed_on_error(fig):
            raise RuntimeError("drawing failed")
    assert plt.get_fignums() == before
