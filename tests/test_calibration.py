"""One calibration for every method: MinMax identical to ONNX Runtime's, Percentile levels from one histogram
pass within a bin of ONNX Runtime's own calibrator, images decoded once for both passes, every cache quantizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization.calibrate import load_tensors_data

from test_export import ARCH_KWARGS, _card, _train_briefly, _write_images
from tledge.exporting import calibration as calibration_mod
from tledge.exporting.calibration import HIST_BINS, Calibration
from tledge.exporting.int8 import quantize_int8
from tledge.exporting.onnx_export import export_onnx
from tledge.models.backbones import create_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("calib")
    items = _write_images(base / "data", "train", 16, seed=1)
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 3, **ARCH_KWARGS)
    _train_briefly(model, base / "data", items)
    onnx_path = export_onnx(model, _card(), base / "model.onnx")
    return onnx_path, [base / "data" / rel for rel, _ in items], base


def _ranges(path: Path) -> dict[str, np.ndarray]:
    data = load_tensors_data(path)
    return {k: np.array(v.range_value, dtype=np.float64).ravel() for k, v in data.items()}


def test_minmax_is_onnxruntimes_own(tiny):
    onnx_path, images, base = tiny
    ours = Calibration(onnx_path, images, base / "w-minmax").cache_for("minmax")
    theirs = base / "ort-minmax.json"
    quantize_int8(onnx_path, base / "ort-minmax.onnx", images, "u8s8", "minmax", calibration_cache=theirs)
    a, b = _ranges(ours), _ranges(theirs)
    assert set(a) == set(b) and len(a) > 10
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("level", [99.9, 99.999])
def test_percentile_levels_match_onnxruntime_within_a_bin(tiny, level):
    onnx_path, images, base = tiny
    ours = Calibration(onnx_path, images, base / f"w-{level}").cache_for("percentile", level)
    theirs = base / f"ort-{level}.json"
    quantize_int8(onnx_path, base / f"ort-{level}.onnx", images, "u8s8", "percentile", level, calibration_cache=theirs)
    a, b = _ranges(ours), _ranges(theirs)
    assert set(a) == set(b)
    for name in a:
        limit = max(np.abs(b[name]).max(), 1e-12)
        # ONNX Runtime's bins grow batch by batch; ours span the final range: up to a bin or two apart.
        assert np.abs(a[name] - b[name]).max() <= 3 * limit / (HIST_BINS // 2) + 1e-6, name


def test_every_method_from_two_passes_over_images_decoded_once_and_each_cache_quantizes(tiny, monkeypatch):
    onnx_path, images, base = tiny
    reads = []
    import tledge.preprocess as preprocess_mod

    real = preprocess_mod.load_image
    monkeypatch.setattr(preprocess_mod, "load_image", lambda p: reads.append(p) or real(p))
    calibration = Calibration(onnx_path, images, base / "w-all")
    caches = [calibration.cache_for(m, p) for m, p in
              [("minmax", None), ("percentile", 99.9), ("percentile", 99.99), ("percentile", 99.999), ("entropy", None)]]
    assert len(reads) == len(images)  # decoded once: the histogram pass reuses the MinMax pass's batches
    assert set(calibration.seconds) >= {"minmax pass", "histogram pass"}
    assert calibration.cache_for("percentile", 99.99) == caches[2]  # cached: nothing recomputed
    assert len(reads) == len(images)
    wider = _ranges(caches[1]), _ranges(caches[3])
    assert all(wider[1][k][1] >= wider[0][k][1] - 1e-6 for k in wider[0])  # a higher percentile never clips more
    for cache, (method, level) in zip(caches, [("minmax", None), ("percentile", 99.9), ("percentile", 99.99),
                                               ("percentile", 99.999), ("entropy", None)]):
        out = quantize_int8(onnx_path, base / f"q-{method}-{level}.onnx", images, "u8s8", method, level,
                            calibration_cache=cache)
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": np.zeros((2, 3, 32, 32), np.float32)})[0]
        assert logits.shape == (2, 3) and np.isfinite(logits).all()


def test_fixed_range_histogram_counts_every_value():
    values = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0, 9.0], dtype=np.float32)  # 9.0 is beyond the range
    counts = calibration_mod._fixed_range_histogram(values, 2.0)
    assert counts.sum() == values.size and counts[0] == 1 and counts[-1] == 2  # -2 first bin; 2.0 and 9.0 last
    assert counts[HIST_BINS // 2] == 1  # 0.0 sits in the bin right of the centre edge
    zeros = calibration_mod._fixed_range_histogram(np.zeros(5, np.float32), 0.0)
    assert zeros[HIST_BINS // 2] == 5


def test_fixed_range_histogram_with_reused_buffers_counts_the_same_and_skips_nan():
    rng = np.random.default_rng(3)
    scratch = calibration_mod._Scratch()
    big = (rng.standard_normal(50_000) * 3).astype(np.float32)
    big[::7] = 0.0
    first = calibration_mod._fixed_range_histogram(big, 4.0, scratch)
    calibration_mod._fixed_range_histogram(np.ones(10, np.float32), 1.0, scratch)  # a smaller tensor in between
    again = calibration_mod._fixed_range_histogram(big, 4.0, scratch)
    assert np.array_equal(first, again) and first.sum() == big.size
    assert first[HIST_BINS // 2] == np.count_nonzero((big >= 0) & (big < 4.0 * 2 / HIST_BINS))
    assert first[0] == np.count_nonzero(big < -4.0 + 4.0 * 2 / HIST_BINS)  # below the range: the first bin
    with_nan = np.array([1.0, np.nan, -1.0, 0.25], np.float32)
    counts = calibration_mod._fixed_range_histogram(with_nan, 1.0, scratch)
    assert counts.sum() == 3 and counts[-1] == 1 and counts[0] == 1


def test_images_too_large_to_keep_are_decoded_again(tiny, monkeypatch):
    onnx_path, images, base = tiny
    reads = []
    import tledge.preprocess as preprocess_mod

    real = preprocess_mod.load_image
    monkeypatch.setattr(preprocess_mod, "load_image", lambda p: reads.append(p) or real(p))
    monkeypatch.setattr(calibration_mod, "KEEP_DECODED_BYTES", 1000)  # less than one batch
    kept = Calibration(onnx_path, images, base / "w-kept").cache_for("percentile", 99.99)
    assert len(reads) == 2 * len(images)  # streamed twice, same result as when kept
    streamed = _ranges(kept)
    kept_in_memory = _ranges(Calibration(onnx_path, images, base / "w-all").cache_for("percentile", 99.99))
    assert set(streamed) == set(kept_in_memory)
    assert all(np.array_equal(streamed[k], kept_in_memory[k]) for k in streamed)
