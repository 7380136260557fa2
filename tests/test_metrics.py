import numpy as np
import pytest

from tledge import metrics


def test_confusion_matrix_and_report_match_hand_computation():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    report = metrics.classification_report(y_true, y_pred, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # class a: P=2/2 R=2/3; class b: P=1/2 R=1/2; class c: P=1/2 R=1/1
    a, b, c = (report["per_class"][k] for k in "abc")
    assert a["precision"] == 1.0 and a["recall"] == pytest.approx(2 / 3) and a["f1"] == pytest.approx(0.8)
    assert b["f1"] == pytest.approx(0.5)
    assert c["precision"] == 0.5 and c["recall"] == 1.0 and c["f1"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["macro"]["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["weighted"]["f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert [a["support"], b["support"], c["support"]] == [3, 2, 1]


def test_never_predicted_class_has_zero_precision_not_nan():
    report = metrics.classification_report([0, 1], [0, 0], ["a", "b"])
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_topk_and_softmax():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert metrics.topk_accuracy(logits, [1, 0], 1) == 0.0
    assert metrics.topk_accuracy(logits, [1, 0], 2) == 0.5
    assert metrics.topk_accuracy(logits, [1, 0], 3) == 1.0
    probs = metrics.softmax(logits)
    assert probs.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert probs[0, 0] == pytest.approx(np.exp(3) / (np.exp(3) + np.exp(2) + np.exp(1)))


def test_latency_stats_percentiles_and_fps():
    stats = metrics.latency_stats(list(range(1, 101)), items_per_sample=4)
    assert stats["count"] == 100
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5)
    assert stats["fps"] == pytest.approx(4000 / 50.5)
    assert metrics.latency_stats([]) == {"count": 0}
