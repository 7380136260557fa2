"""TensorRT engine building, checked against a call-recording stand-in (tests/fake_tensorrt.py) and, statically,
against the identifier lists of real TensorRT bindings (../shared/tensorrt-api). Neither is TensorRT
verification: that is scripts/gpu_check.sh on a GPU machine (and the @pytest.mark.gpu test below)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import fake_tensorrt
from tledge.card import ModelCard, engine_sidecar_path
from tledge.errors import MissingDependency, TledgeError
from tledge.exporting import tensorrt_build as tb
from tledge.exporting.fp16 import convert_to_fp16
from tledge.exporting.onnx_export import export_onnx
from tledge.models.backbones import create_model

API_LISTS = Path(__file__).resolve().parents[1].parent / "shared" / "tensorrt-api"
SIZE = 32


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """model.onnx (dynamic batch) and a symmetric QDQ model.int8.trt.onnx of a tiny random MobileNetV2."""
    from tledge.exporting.int8 import quantize_int8
    import cv2

    base = tmp_path_factory.mktemp("trt")
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 3, width_mult=0.25, inverted_residual_setting=[[1, 8, 1, 1]]).eval()
    card = ModelCard("mobilenet_v2", ["a", "b", "c"], input_size=(SIZE, SIZE),
                     arch_kwargs={"width_mult": 0.25, "inverted_residual_setting": [[1, 8, 1, 1]]})
    onnx_path = export_onnx(model, card, base / "model.onnx")
    rng = np.random.default_rng(0)
    images = []
    for i in range(32):
        path = base / "calib" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
        images.append(path)
    int8_path = quantize_int8(onnx_path, base / "model.int8.trt.onnx", images, flavour="s8s8")
    fixed = export_onnx(model, card, base / "fixed.onnx", batch=2)
    return {"onnx": onnx_path, "int8": int8_path, "fixed": fixed, "card": card}


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a fake tensorrt of a given version, and a fake GPU."""

    def install(version="10.3.0", **kwargs):
        module = fake_tensorrt.make(version, **kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        monkeypatch.setattr(tb, "detect_gpu", lambda: ("Fake Orin", "8.7"))
        return module

    return install


def _build(files, tmp_path, precision="fp16", profile=tb.Profile(1, 4, 8), **kwargs):
    src = files["onnx"] if precision == "fp16" else files["int8"]
    return tb.build_engine(src, tmp_path / f"model.{precision}.engine", precision, profile, **kwargs)


# ----------------------------------------------------------------------------------------- eras and flags
@pytest.mark.parametrize("version, era", [("8.5.2", "weak"), ("8.6.1", "weak"), ("10.3.0", "weak"),
                                          ("10.11.0", "weak"), ("10.12.0", "strong"), ("11.4.0", "strong")])
def test_era_detection(version, era):
    assert tb.detect_era(fake_tensorrt.make(version)) == era


def test_too_old_tensorrt_is_refused():
    with pytest.raises(TledgeError, match="8.5 or newer"):
        tb.detect_era(fake_tensorrt.make("8.4.3"))


@pytest.mark.parametrize("version, precision, flags, network_flag", [
    ("8.6.1", "fp16", ["FP16"], "EXPLICIT_BATCH"),
    ("8.6.1", "int8", ["FP16", "INT8"], "EXPLICIT_BATCH"),
    ("10.3.0", "fp16", ["FP16"], None),
    ("10.3.0", "int8", ["FP16", "INT8"], None),
    ("10.12.0", "fp16", [], "STRONGLY_TYPED"),  # no precision flags
    ("10.12.0", "int8", [], "STRONGLY_TYPED"),
    ("11.4.0", "int8", [], "STRONGLY_TYPED"),
])
def test_flags_per_era(version, precision, flags, network_flag, fake_trt, onnx_files, tmp_path):
    trt = fake_trt(version)
    engine = _build(onnx_files, tmp_path, precision)
    spec = fake_tensorrt.engine_spec(engine)
    expected_bits = 1 << int(getattr(trt.NetworkDefinitionCreationFlag, network_flag)) if network_flag else 0
    assert spec["flags"] == flags and spec["network_flags"] == expected_bits
    strong = version.startswith(("10.12", "11"))
    # strongly typed: the graph carries the types, so FP16 (and INT8's float region) come from an FP16 ONNX
    assert spec["fp16_graph"] is strong and spec["qdq"] is (precision == "int8")
    parsed = [c[1] for c in trt.CALLS if c[0] == "parse_from_file"]
    if strong:
        expected = "model.fp16.onnx" if precision == "fp16" else "model.int8.fp16.onnx"
    else:
        expected = Path(onnx_files["onnx"] if precision == "fp16" else onnx_files["int8"]).name
    assert parsed == [expected]
    facts = json.loads(engine_sidecar_path(engine).read_text())["extra"]["tensorrt"]
    assert facts["typed"] == ("strong" if strong else "weak") and facts["flags"] == flags
    assert facts["float_region"] == "fp16"  # weakly typed INT8 sets the FP16 flag for its float layers too


def test_strongly_typed_int8_float_region_is_fp16_and_still_computes_the_same(fake_trt, onnx_files, tmp_path):
    """TensorRT 10.12+/11 build the QDQ graph as typed: the converted graph must keep the INT8 layers, turn
    the float layers (and DQ outputs) into FP16, pass the Q/DQ check and compute what the FP32-region file does."""
    import onnxruntime as ort
    from tledge.exporting.qdq_check import check_qdq

    fake_trt("11.4.0")
    _build(onnx_files, tmp_path, "int8")
    converted = tmp_path / "model.int8.fp16.onnx"
    model = onnx.load(str(converted))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    dq_scales = {n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert dq_scales and all(types[name] == onnx.TensorProto.FLOAT16 for name in dq_scales)
    assert sum(1 for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8) > 0  # still INT8 weights
    assert check_qdq(converted, "tensorrt") == []
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Unfused: each Q/DQ pair runs as written (float arithmetic on dequantized values), so what is compared is the
    # FP16 conversion, not ONNX Runtime's fused int8 kernels, whose AVX2-only int16 pairs saturate with these
    # full-range weights and made this comparison fail on CPUs without VNNI (see test_int8_x86_kinds.py).
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    want = ort.InferenceSession(str(onnx_files["int8"]), options).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(converted), options).run(None, {"input": x})[0]
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= 0.05 * max(np.abs(want).max(), 1e-3)


def test_profile_workspace_and_sidecar(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("10.3.0")
    engine = _build(onnx_files, tmp_path, "int8", tb.make_profile(4, 32), workspace_mib=256)
    assert ("set_shape", "input", (1, 3, SIZE, SIZE), (4, 3, SIZE, SIZE), (32, 3, SIZE, SIZE)) in trt.CALLS
    assert ("set_memory_pool_limit", "WORKSPACE", 256 << 20) in trt.CALLS
    sidecar = json.loads(engine_sidecar_path(engine).read_text())
    card = ModelCard.from_dict(sidecar)
    assert card.precision == "int8" and card.class_names == ["a", "b", "c"] and card.input_size == (SIZE, SIZE)
    facts = card.extra["tensorrt"]
    assert facts == {**facts, "version": "10.3.0", "gpu_name": "Fake Orin", "compute_capability": "8.7",
                     "precision": "int8", "profile": {"min": 1, "opt": 4, "max": 32}, "typed": "weak",
                     "workspace_mib": 256}
    assert card.extra["int8"]["flavour"] == "s8s8"  # the QDQ facts travel with the engine
    from tledge.runtime.backends.tensorrt_backend import read_engine_sidecar

    assert read_engine_sidecar(engine).extra["tensorrt"]["precision"] == "int8"


def test_timing_cache_persisted_and_reused(fake_trt, onnx_files, tmp_path):
    trt = fake_trt("10.3.0")
    first = _build(onnx_files, tmp_path, "fp16")
    cache = tmp_path / tb.TIMING_CACHE_NAME
    assert cache.read_bytes() == b"+"
    assert json.loads(engine_sidecar_path(first).read_text())["extra"]["tensorrt"]["timing_cache_reused"] is False
    second = _build(onnx_files, tmp_path, "int8")
    assert ("create_timing_cache", b"+") in trt.CALLS
    assert cache.read_bytes() == b"++"
    assert json.loads(engine_sidecar_path(second).read_text())["extra"]["tensorrt"]["timing_cache_reused"] is True
    cache.write_bytes(b"mismatch")  # from another TensorRT/GPU: a fresh cache, not a failure
    third = _build(onnx_files, tmp_path, "fp16")
    assert json.loads(engine_sidecar_path(third).read_text())["extra"]["tensorrt"]["timing_cache_reused"] is False


def test_progress_monitor_where_available(fake_trt, onnx_files, tmp_path, log_lines):
    fake_trt("10.3.0")
    lines = log_lines
    tb.build_engine(onnx_files["onnx"], tmp_path / "a.engine", "fp16", tb.Profile(1, 1, 2))
    assert any("Building engine (2 steps)" in line for line in lines)
    trt8 = fake_trt("8.6.1")
    tb.build_engine(onnx_files["onnx"], tmp_path / "b.engine", "fp16", tb.Profile(1, 1, 2))
    assert ("Logger", "INFO") in trt8.CALLS  # no IProgressMonitor in 8.x: the builder log is the progress


# ----------------------------------------------------------------------------------------- errors
def test_parser_errors_are_one_clear_error(fake_trt, onnx_files, tmp_path):
    fake_trt("10.3.0", parse_errors=["In node 3 (Conv): UNSUPPORTED_NODE"])
    with pytest.raises(TledgeError, match="parser rejected model.onnx.*UNSUPPORTED_NODE"):
        _build(onnx_files, tmp_path)


def test_failed_build_is_a_clear_error(fake_trt, onnx_files, tmp_path):
    fake_trt("10.3.0", fail_build=True)
    with pytest.raises(TledgeError, match="could not build the engine.*--workspace"):
        _build(onnx_files, tmp_path)
    assert not (tmp_path / "model.fp16.engine").exists()


def test_int32_bias_dq_is_refused_before_building(fake_trt, onnx_files, tmp_path):
    """An INT8 ONNX with ONNX Runtime's default INT32 bias quantization: the Q/DQ check stops it before the
    build, and the stand-in parser (which mirrors TensorRT's) refuses it too when the check is bypassed."""
    trt = fake_trt("10.3.0")
    bad = _with_int32_bias_dq(onnx_files["int8"], tmp_path / "bias.onnx")
    with pytest.raises(TledgeError, match="not a valid Q/DQ graph for tensorrt.*int32"):
        tb.build_engine(bad, tmp_path / "x.engine", "int8", tb.Profile(1, 1, 2))
    assert not [c for c in trt.CALLS if c[0] == "build_serialized_network"]
    builder = trt.Builder(trt.Logger())
    with pytest.raises(TledgeError, match="parser rejected bias.onnx.*INT32"):
        tb.network_from_onnx(trt, builder, bad, "weak", trt.Logger())


def test_stand_in_refuses_a_dynamic_network_without_profile(fake_trt, onnx_files):
    trt = fake_trt("10.3.0")
    builder = trt.Builder(trt.Logger())
    network, _ = tb.network_from_onnx(trt, builder, onnx_files["onnx"], "weak", trt.Logger())
    with pytest.raises(TledgeError, match="could not build"):
        tb.build_serialized(builder, network, builder.create_builder_config())
    assert ("error", "no optimization profile") in trt.CALLS


def test_stand_in_refuses_flag_bits_its_version_lacks():
    trt11 = fake_tensorrt.make("11.4.0")
    assert not hasattr(trt11.BuilderFlag, "INT8") and not hasattr(trt11.BuilderFlag, "FP16")
    with pytest.raises(ValueError, match="unknown NetworkDefinitionCreationFlag"):
        trt11.Builder(None).create_network(1 << 1)  # 10.x's STRONGLY_TYPED bit
    assert tb.network_flags(trt11, tb.STRONG) == 1 << int(trt11.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _with_int32_bias_dq(src, dst):
    """A copy of a QDQ ONNX whose Gemm bias goes through an INT32 DequantizeLinear (quantize_static's default)."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    bias = next(i for i in model.graph.initializer if i.name == gemm.input[2])
    values = numpy_helper.to_array(bias)
    model.graph.initializer.extend([
        numpy_helper.from_array(np.round(values / 1e-4).astype(np.int32), "bias_q"),
        numpy_helper.from_array(np.array(1e-4, np.float32), "bias_scale"),
        numpy_helper.from_array(np.array(0, np.int32), "bias_zero"),
    ])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["bias_q", "bias_scale", "bias_zero"], ["bias_dq"],
                                                name="bias_DequantizeLinear"))
    gemm.input[2] = "bias_dq"
    onnx.save(model, str(dst))
    return Path(dst)


def test_fixed_batch_onnx_is_refused(fake_trt, onnx_files, tmp_path):
    fake_trt("10.3.0")
    with pytest.raises(TledgeError, match="fixed batch"):
        tb.build_engine(onnx_files["fixed"], tmp_path / "x.engine", "fp16", tb.Profile(1, 1, 2))


def test_no_gpu_and_no_tensorrt(monkeypatch, fake_trt, onnx_files, tmp_path):
    fake_trt("10.3.0")
    monkeypatch.setattr(tb, "detect_gpu", lambda: None)
    with pytest.raises(TledgeError, match="NVIDIA GPU"):
        _build(onnx_files, tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(MissingDependency, match="pip install 'tledge\\[gpu\\]'"):
        _build(onnx_files, tmp_path)


def test_profile_bounds():
    assert tb.make_profile() == tb.Profile(1, 1, 16)
    assert tb.make_profile(8, None) == tb.Profile(1, 8, 16)
    with pytest.raises(TledgeError):
        tb.make_profile(8, 4)


def _checkpoint_run(tmp_path) -> Path:
    """A run folder with a tiny random checkpoint and a split of 11 training images."""
    from test_export import ARCH_KWARGS, CLASSES, _write_images
    from tledge.checkpoint import save_checkpoint
    from tledge.splits import Splits

    data = tmp_path / "data"
    train = _write_images(data, "train", 11, seed=3)
    run = tmp_path / "run"
    run.mkdir()
    Splits(str(data), CLASSES, {"train": train, "val": [], "test": []}).save(run)
    model = create_model("mobilenet_v2", 3, **ARCH_KWARGS)
    card = ModelCard("mobilenet_v2", CLASSES, input_size=(SIZE, SIZE), arch_kwargs=ARCH_KWARGS)
    save_checkpoint(run / "best.pt", {"card": card.to_dict(), "model": model.state_dict(), "epoch": 0})
    return run


def test_pipeline_builds_both_engines_with_fake(fake_trt, tmp_path, monkeypatch):
    """export_run end to end with trt-fp16 and trt-int8 (engines cannot run here: --no-parity)."""
    from tledge.exporting.pipeline import export_run

    trt = fake_trt("10.3.0")
    run = _checkpoint_run(tmp_path)
    result = export_run(run, "onnx,trt-fp16,trt-int8", batch=2, max_batch=8, workspace=512, parity=False)
    out = run / "export"
    assert {r.format for r in result.rows} == {"onnx", "int8-trt", "trt-fp16", "trt-int8"}
    for name in ("model.onnx", "model.int8.trt.onnx", "model.fp16.engine", "model.int8.engine",
                 "model.fp16.engine.json", "model.int8.engine.json", tb.TIMING_CACHE_NAME):
        assert (out / name).is_file(), name
    assert onnx.load(str(out / "model.onnx")).graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic
    shapes = [c for c in trt.CALLS if c[0] == "set_shape"]
    assert shapes and all(c[2][0] == 1 and c[3][0] == 2 and c[4][0] == 8 for c in shapes)
    assert "tledge predict" in result.next_commands[0] and "model.fp16.engine" in result.next_commands[0]


@pytest.mark.parametrize("version", ["10.12.0", "11.4.0"])
def test_strongly_typed_export_leaves_no_intermediate_onnx(version, fake_trt, tmp_path):
    """The FP16 ONNX files a strongly typed build parses (model.fp16.onnx, model.int8.fp16.onnx) are written
    to export's temporary folder, not beside the engines, where bench would pick them up as more rows."""
    from tledge.exporting.pipeline import export_run

    trt = fake_trt(version)
    run = _checkpoint_run(tmp_path)
    export_run(run, "onnx,trt-fp16,trt-int8", batch=2, max_batch=8, parity=False)
    out = run / "export"
    parsed = [Path(c[1]).name for c in trt.CALLS if c[0] == "parse_from_file"]
    assert sorted(parsed) == ["model.fp16.onnx", "model.int8.fp16.onnx"]  # they were built from
    assert sorted(p.name for p in out.glob("*.onnx")) == ["model.int8.trt.onnx", "model.onnx"]
    assert (out / "model.fp16.engine").is_file() and (out / "model.int8.engine").is_file()


# ----------------------------------------------------------------------------------------- fp16 onnx
def test_fp16_conversion_keeps_float32_io(onnx_files, tmp_path):
    import onnxruntime as ort

    out = convert_to_fp16(onnx_files["onnx"], tmp_path / "model.fp16.onnx")
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(i.data_type != onnx.TensorProto.FLOAT for i in model.graph.initializer)
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    want = ort.InferenceSession(str(onnx_files["onnx"])).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"input": x})[0]
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-2 * max(np.abs(want).max(), 1e-6)


def test_tiny_weight_scales_survive_the_fp16_conversion(onnx_files, tmp_path, log_lines):
    """Per-channel weight scales of 1e-9 (0 in float16) and 1e-6 (subnormal) are raised to float16's smallest
    normal with their INT8 weights requantized, so the strongly typed INT8 source still passes the Q/DQ check
    and dequantizes to the same weights within half a step."""
    from onnx import numpy_helper

    from tledge.exporting.qdq_check import check_qdq

    FP16_MIN_NORMAL = float(np.finfo(np.float16).tiny)  # 6.1e-05
    model = onnx.load(str(onnx_files["int8"]))
    inits = {i.name: i for i in model.graph.initializer}
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
              and inits[n.input[0]].data_type == onnx.TensorProto.INT8 and len(inits[n.input[0]].dims) == 4
              and numpy_helper.to_array(inits[n.input[1]]).size > 2)
    scale = numpy_helper.to_array(inits[dq.input[1]]).copy()
    scale[0], scale[1] = 1e-9, 1e-6
    inits[dq.input[1]].CopyFrom(numpy_helper.from_array(scale, dq.input[1]))
    q = numpy_helper.to_array(inits[dq.input[0]])
    src = tmp_path / "tiny.onnx"
    onnx.save(model, str(src))

    said = log_lines
    out = convert_to_fp16(src, tmp_path / "tiny.fp16.onnx", min_opset=tb.QDQ_FP16_OPSET)
    assert check_qdq(out, "tensorrt") == []
    assert len(said) == 1 and "1 Q/DQ scale tensor(s)" in said[0] and dq.input[1] in said[0]
    converted = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    new_scale, new_q = converted[dq.input[1]].astype(np.float32), converted[dq.input[0]]
    assert new_scale.dtype == np.float32 and converted[dq.input[1]].dtype == np.float16
    assert new_scale[0] == new_scale[1] == np.float16(FP16_MIN_NORMAL)
    assert (new_q[0] == 0).all()  # 1e-9 × q is far below half a step at the raised scale
    np.testing.assert_array_equal(new_q[1], np.round(q[1] * (1e-6 / float(new_scale[1]))).astype(np.int8))
    assert np.abs(new_q[:2] * new_scale[:2, None, None, None] - q[:2] * scale[:2, None, None, None]).max() \
        <= FP16_MIN_NORMAL / 2 + 1e-12
    np.testing.assert_array_equal(new_q[2:], q[2:])  # other channels untouched
    import onnxruntime as ort

    x = np.zeros((1, 3, SIZE, SIZE), np.float32)
    assert np.isfinite(ort.InferenceSession(str(out)).run(None, {"input": x})[0]).all()


def test_strongly_typed_int8_build_with_tiny_scales(fake_trt, onnx_files, tmp_path, log_lines):
    """End to end on the 11.x stand-in, whose parser refuses non-positive scales as TensorRT's does: a 1e-9
    weight scale (0 in float16) no longer stops the strongly typed INT8 build."""
    from onnx import numpy_helper

    trt = fake_trt("11.4.0")
    model = onnx.load(str(onnx_files["int8"]))
    inits = {i.name: i for i in model.graph.initializer}
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
              and inits[n.input[0]].data_type == onnx.TensorProto.INT8 and len(inits[n.input[0]].dims) == 4)
    scale = numpy_helper.to_array(inits[dq.input[1]]).copy()
    scale.reshape(-1)[0] = 1e-9
    inits[dq.input[1]].CopyFrom(numpy_helper.from_array(scale, dq.input[1]))
    src = tmp_path / "tiny.int8.trt.onnx"
    onnx.save(model, str(src))
    said = log_lines
    engine = tb.build_engine(src, tmp_path / "model.int8.engine", "int8", tb.Profile(1, 1, 2))
    assert engine.is_file() and ("parse_from_file", "model.int8.fp16.onnx") in trt.CALLS
    assert any("raised to it" in line for line in said)
    zero = onnx.load(str(tmp_path / "model.int8.fp16.onnx"))
    zinits = {i.name: i for i in zero.graph.initializer}
    values = numpy_helper.to_array(zinits[dq.input[1]]).copy()
    values.reshape(-1)[0] = 0  # what the float16 cast made of 1e-9 before: the stand-in parser refuses it
    zinits[dq.input[1]].CopyFrom(numpy_helper.from_array(values, dq.input[1]))
    onnx.save(zero, str(tmp_path / "zero.onnx"))
    with pytest.raises(TledgeError, match="Scale coefficients must all be positive"):
        tb.network_from_onnx(trt, trt.Builder(trt.Logger()), tmp_path / "zero.onnx", "strong", trt.Logger())


# ----------------------------------------------------------------------------------------- API names
def _names(version: str) -> list[str]:
    path = API_LISTS / f"names-{version}.txt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return path.read_text().split()


def _missing(names, listed):
    """Names in neither the list nor, as a suffix, any listed string. Compilers merge string tails (`INT8` is
    stored inside `UINT8`, `num_errors` inside `get_num_errors`), so a suffix hit counts — a weaker check."""
    exact = set(listed)
    return [n for n in names if n not in exact and not any(s.endswith(n) for s in listed)]


@pytest.mark.parametrize("version, tuples", [
    ("8.6.1", (tb.API_NAMES_WEAK, tb.API_NAMES_EXPLICIT_BATCH)),
    ("10.3.0", (tb.API_NAMES_WEAK, tb.API_NAMES_PROGRESS)),
    ("11.4.0.106", (tb.API_NAMES_STRONG, tb.API_NAMES_PROGRESS)),
])
def test_api_names_exist_in_that_era(version, tuples):
    listed = _names(version)
    for names in tuples:
        assert _missing(names, listed) == []


def test_probed_names_exist_somewhere():
    """Feature probes must name something real in at least one era (a typo would silently probe nothing)."""
    listed = _names("8.6.1") + _names("10.3.0") + _names("11.4.0.106")
    assert _missing(tb.API_NAMES_PROBED, listed) == []


@pytest.mark.parametrize("version, listed_as", [("8.6.1", "8.6.1"), ("10.3.0", "10.3.0"), ("11.4.0", "11.4.0.106")])
def test_stand_in_enums_match_the_real_bindings(version, listed_as):
    """The stand-in's enum members of an era exist in that era's bindings (so it cannot offer a flag the
    real TensorRT lacks, as it once offered INT8 on 11.x)."""
    listed = _names(listed_as)
    trt = fake_tensorrt.make(version)
    members = [k for k in vars(trt.BuilderFlag)] + [k for k in vars(trt.NetworkDefinitionCreationFlag)]
    assert _missing(members, listed) == []
    if version.startswith("11"):
        assert _missing(["FP16", "EXPLICIT_BATCH"], listed) == ["FP16", "EXPLICIT_BATCH"]


def test_weak_only_names_are_gone_in_11():
    listed = set(_names("11.4.0.106"))
    assert "FP16" not in listed and "EXPLICIT_BATCH" not in listed  # why the strong era must not use them


@pytest.mark.parametrize("version, allowed", [
    ("8.6.1", tb.API_NAMES_WEAK + tb.API_NAMES_EXPLICIT_BATCH),
    ("10.3.0", tb.API_NAMES_WEAK + tb.API_NAMES_PROGRESS),
    ("11.4.0", tb.API_NAMES_STRONG + tb.API_NAMES_PROGRESS),
])
def test_code_uses_only_its_eras_names(version, allowed, fake_trt, onnx_files, tmp_path):
    """Every attribute tledge read on the fake module/objects during fp16 + int8 builds is in the era tuple
    (names only probed with hasattr to tell the eras apart are allowed to be absent)."""
    trt = fake_trt(version)
    _build(onnx_files, tmp_path, "fp16")
    _build(onnx_files, tmp_path, "int8")
    used = set(trt.NAMES) - set(tb.API_NAMES_UNLISTED) - set(tb.API_NAMES_PROBED)
    assert used - set(allowed) == set()


@pytest.mark.gpu
def test_real_tensorrt_builds_engines_and_runs_them(onnx_files, tmp_path):
    """Build FP16 and INT8 engines, then run each through tledge's TensorRT backend (the stream handle, the
    buffers, execute_async_v3) on a full and a partial batch, against ONNX Runtime's FP32 / QDQ results."""
    pytest.importorskip("tensorrt")
    if tb.detect_gpu() is None:
        pytest.skip("no CUDA GPU")
    import onnxruntime as ort

    from tledge.runtime.backends import load_backend

    x = np.random.default_rng(2).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    for precision, reference in (("fp16", onnx_files["onnx"]), ("int8", onnx_files["int8"])):
        engine = _build(onnx_files, tmp_path, precision, tb.Profile(1, 2, 4))
        assert engine.stat().st_size > 0 and engine_sidecar_path(engine).is_file()
        want = ort.InferenceSession(str(reference), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        with load_backend(engine, "cuda") as backend:
            assert backend.name == f"tensorrt-{precision}" and backend.provider == "tensorrt"
            for batch in (x, x[:3]):
                got = backend.predict(batch)
                scale = max(float(np.abs(want).max()), 1e-3)
                assert got.shape == (len(batch), 3) and np.isfinite(got).all()
                assert np.abs(got - want[:len(batch)]).max() <= 0.1 * scale, (precision, got, want)
            assert backend.last_gpu_ms is not None and backend.last_gpu_ms > 0
