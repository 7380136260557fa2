"""The onnx-fp16 export format: an FP16 graph with float32 edges, its card, ONNX Runtime CPU running it, and its
parity row beside the FP32 ONNX's (tiny MobileNetV2 of test_export, real conversions, real ONNX Runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from test_export import tiny_run  # noqa: F401 - the shared module-scoped fixture
from tledge.card import card_from_onnx
from tledge.exporting.pipeline import export_run
from tledge.preprocess import load_batch
from tledge.runtime.backends import load_backend
from tledge.runtime.bench import artifact_format
from tledge.splits import Splits


@pytest.fixture(scope="module")
def fp16_export(tiny_run, tmp_path_factory):  # noqa: F811
    """onnx + onnx-fp16 with parity on the test split (24 images: too few to settle FP16's 99.5 % agreement gate,
    so the export ends inconclusive; the rows are what is checked here)."""
    out = tmp_path_factory.mktemp("fp16")
    return export_run(tiny_run, "onnx,onnx-fp16", out, pack_images=0, raise_on_failure=False)


def _test_batch(run: Path, card):
    batch, kept = load_batch(Splits.load(run).paths("test"), card)
    assert len(kept) == 24
    return batch


def test_fp16_graph_has_float16_weights_and_float32_edges(fp16_export):
    path = fp16_export["onnx-fp16"]
    assert path.name == "model.fp16.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]
    kinds = {init.data_type for init in model.graph.initializer if init.data_type in (TensorProto.FLOAT,
                                                                                       TensorProto.FLOAT16)}
    assert kinds == {TensorProto.FLOAT16}
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert casts[0].input[0] == model.graph.input[0].name and casts[-1].output[0] == model.graph.output[0].name


def test_fp16_card_says_fp16_and_keeps_the_rest(fp16_export):
    fp32, fp16 = card_from_onnx(fp16_export["onnx"]), card_from_onnx(fp16_export["onnx-fp16"])
    assert (fp32.precision, fp16.precision) == ("fp32", "fp16")
    assert fp16.extra["fp16"] == {"source": "model.onnx", "io": "float32"}
    assert fp16.class_names == fp32.class_names and fp16.input_size == fp32.input_size
    assert fp16.checkpoint_sha256 == fp32.checkpoint_sha256 != ""


def test_onnxruntime_cpu_runs_fp16_close_to_fp32(fp16_export, tiny_run):  # noqa: F811
    with load_backend(fp16_export["onnx"], device="cpu") as fp32, \
            load_backend(fp16_export["onnx-fp16"], device="cpu") as fp16:
        assert fp16.name == "onnxruntime-cpu-fp16" and fp16.provider == "cpu"
        batch = _test_batch(tiny_run, fp32.card)
        want, got = fp32.predict(batch), fp16.predict(batch)
    assert got.dtype == np.float32 and got.shape == want.shape == (24, 3)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() / scale < 1e-2  # float16 keeps ~3 significant digits
    assert np.abs(got - want).max() / scale > 1e-7  # and it is not the FP32 graph
    assert (got.argmax(1) == want.argmax(1)).all()


def test_fp16_has_a_parity_row_judged_as_fp16(fp16_export):
    rows = {r.format: r for r in fp16_export.rows}
    assert list(rows) == ["onnx", "onnx-fp16"] and rows["onnx-fp16"].kind == "fp16"
    parity = rows["onnx-fp16"].parity
    assert parity.images == 24 and parity.agreement == 100.0 and parity.gains == parity.losses == 0
    assert parity.backend == "onnxruntime-cpu-fp16"
    assert parity.outcome == "inconclusive"  # 24/24 agreeing: Wilson's lower bound (86 %) is under 99.5 %
    assert rows["onnx"].parity.outcome == "within"
    written = json.loads((fp16_export.out_dir / "parity.json").read_text())
    assert [(r["name"], r["kind"]) for r in written["results"]] == [("onnx", "fp32"), ("onnx-fp16", "fp16")]
    assert "onnx-fp16" in fp16_export.table() and "model.fp16.onnx" in fp16_export.table()


def test_bench_names_the_fp16_format(fp16_export):
    assert artifact_format(fp16_export["onnx-fp16"]) == "onnx-fp16"
