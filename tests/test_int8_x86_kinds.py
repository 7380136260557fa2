"""The CPU INT8 file computes the same on every x86 kind.

ONNX Runtime's u8s8 kernels on AVX2-only CPUs add each pair of adjacent uint8×int8 products into a saturating
int16 (VPMADDUBSW) before widening; VNNI CPUs accumulate in int32. An exact emulation of both accumulations
on the real first convolution of an exported INT8 graph shows that full-range weights saturate (so AVX2 and
VNNI machines give different answers) and that the 7-bit weights tledge writes cannot. Where qemu-user is
installed, the file also runs under an emulated Haswell (AVX2, no VNNI) and must give this machine's logits.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from test_export import SIZE, tiny_model, tiny_run  # noqa: F401 - fixtures
from tledge.exporting.int16_headroom import INT16_MAX, pair_sum_bound, saturation_problem
from tledge.exporting.int8 import quantize_int8
from tledge.exporting.onnx_export import export_onnx
from tledge.splits import Splits


@pytest.fixture(scope="module")
def int8_pair(tiny_run, tiny_model, tmp_path_factory):
    """The tiny run's INT8 file as tledge writes it (7-bit weights) and the same recipe with full-range weights."""
    model, card = tiny_model
    base = tmp_path_factory.mktemp("kinds")
    fp32 = export_onnx(model, card, base / "model.onnx")
    images = Splits.load(tiny_run).paths("train")
    seven = quantize_int8(fp32, base / "model.int8.onnx", images)  # the CPU flavour's default
    full = quantize_int8(fp32, base / "full.int8.onnx", images, reduce_range=False)
    return seven, full


def _first_conv(path: Path):
    """(input scale, input zero point, int8 weights [O, C, kh, kw], strides, pads) of the graph's first QDQ Conv."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    x_dq, w_dq = producers[conv.input[0]], producers[conv.input[1]]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert attrs.get("group", 1) == 1
    return (float(inits[x_dq.input[1]]), int(inits[x_dq.input[2]]), inits[w_dq.input[0]].astype(np.int32),
            attrs.get("strides", [1, 1]), attrs.get("pads", [0, 0, 0, 0]))


def _accumulate(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first conv's integer sums Σ q·w per output, exactly (int32, as VNNI) and with every adjacent pair of
    products saturated to int16 first (as VPMADDUBSW on AVX2)."""
    scale, zero, weights, strides, pads = _first_conv(path)
    q = np.clip(np.round(x / scale) + zero, 0, 255).astype(np.int32)  # QuantizeLinear to uint8
    q = np.pad(q, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=zero)
    out_c, in_c, kh, kw = weights.shape
    patches = np.lib.stride_tricks.sliding_window_view(q, (kh, kw), axis=(2, 3))[:, :, ::strides[0], ::strides[1]]
    cols = patches.transpose(0, 2, 3, 1, 4, 5).reshape(-1, in_c * kh * kw)  # K ordered (c, kh, kw)
    flat = weights.reshape(out_c, -1)
    k = flat.shape[1] + flat.shape[1] % 2
    cols = np.pad(cols, ((0, 0), (0, k - cols.shape[1])))
    flat = np.pad(flat, ((0, 0), (0, k - flat.shape[1])))
    products = cols[:, None, :] * flat[None, :, :]  # [pixels, O, K]
    exact = products.sum(axis=2)
    pairs = products[:, :, 0::2] + products[:, :, 1::2]
    saturated = np.clip(pairs, -INT16_MAX - 1, INT16_MAX).sum(axis=2)
    return exact, saturated


def _inputs(card_size: int = SIZE) -> np.ndarray:
    """A white frame (every uint8 activation at its top), a black one, and noise, normalised as tledge does."""
    rng = np.random.default_rng(0)
    rgb = np.stack([np.full((card_size, card_size, 3), 255, np.uint8), np.zeros((card_size, card_size, 3), np.uint8),
                    rng.integers(0, 256, (card_size, card_size, 3), dtype=np.uint8)])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((rgb / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)


def test_full_range_weights_saturate_the_avx2_int16_pairs(int8_pair):
    _, full = int8_pair
    bound, _ = pair_sum_bound(full)
    assert bound == 2 * 255 * 127 > INT16_MAX and "would saturate" in saturation_problem(full)
    exact, saturated = _accumulate(full, _inputs())
    assert np.any(exact != saturated)  # an AVX2-only CPU computes other numbers than a VNNI one


def test_seven_bit_weights_cannot_saturate_so_every_x86_kind_agrees(int8_pair):
    seven, _ = int8_pair
    bound, _ = pair_sum_bound(seven)
    assert bound <= 2 * 255 * 64 == 32640 <= INT16_MAX and saturation_problem(seven) is None
    exact, saturated = _accumulate(seven, _inputs())
    np.testing.assert_array_equal(exact, saturated)
    card = onnx.load(str(seven)).metadata_props
    assert '"reduce_range": true' in next(p.value for p in card if p.key == "tledge.card")


def _logits(path: Path, x_path: Path, emulate: bool) -> np.ndarray:
    out = x_path.with_suffix(f".{'emulated' if emulate else 'native'}.npy")
    script = ("import sys, numpy as np, onnxruntime as ort\n"
              "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
              "np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0])\n")
    prefix = ["qemu-x86_64", "-cpu", "Haswell"] if emulate else []
    done = subprocess.run(prefix + [sys.executable, "-c", script, str(path), str(x_path), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(out)


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed (apt-get install qemu-user)")
def test_the_int8_file_gives_the_same_logits_on_an_emulated_avx2_cpu(int8_pair, tmp_path):
    from tledge.provenance.environment import cpu_kernels

    seven, full = int8_pair
    x_path = tmp_path / "x.npy"
    np.save(x_path, _inputs())
    native, emulated = _logits(seven, x_path, False), _logits(seven, x_path, True)
    scale = float(np.abs(native).max())
    np.testing.assert_allclose(emulated, native, rtol=0, atol=1e-5 * scale)
    assert (emulated.argmax(1) == native.argmax(1)).all()
    if cpu_kernels().endswith("vnni"):  # the emulation does reach the saturating kernels: full range differs
        native, emulated = _logits(full, x_path, False), _logits(full, x_path, True)
        assert np.abs(emulated - native).max() > 1e-2 * float(np.abs(native).max())
