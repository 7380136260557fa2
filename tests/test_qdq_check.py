"""The static Q/DQ check (tledge.exporting.qdq_check): each TensorRT parser rule on a small hand-made graph, and
both INT8 flavours tledge writes (the TensorRT one passes the TensorRT rules, the CPU one does not)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tledge.errors import TledgeError
from tledge.exporting.qdq_check import check_qdq, require_qdq_ok


def _conv_graph(*, act_type=np.int8, act_zero=0, weight_axis=0, weight_scales=4, bias_int32=False,
                act_per_channel=False, q_feeds_relu=False, computed_scale=False, opset=17):
    """x → Q → DQ → Conv(DQ(W int8)) → y, with one rule broken as asked."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    inits = [
        numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w_q"),
        numpy_helper.from_array(np.full(weight_scales, 0.1, np.float32) if weight_scales > 1
                                else np.array(0.1, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(weight_scales, np.int8) if weight_scales > 1 else np.array(0, np.int8),
                                "w_zero"),
        numpy_helper.from_array(np.full(3, 0.05, np.float32) if act_per_channel else np.array(0.05, np.float32),
                                "x_scale"),
        numpy_helper.from_array(np.full(3, act_zero, act_type) if act_per_channel else np.array(act_zero, act_type),
                                "x_zero"),
    ]
    nodes = []
    scale_input = "x_scale"
    if computed_scale:
        nodes.append(helper.make_node("Identity", ["x_scale"], ["x_scale_run"], name="scale_at_run_time"))
        scale_input = "x_scale_run"
    nodes += [
        helper.make_node("QuantizeLinear", ["x", scale_input, "x_zero"], ["x_q"], name="q_x", axis=1),
        helper.make_node("DequantizeLinear", ["x_q", scale_input, "x_zero"], ["x_dq"], name="dq_x", axis=1),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], name="dq_w", axis=weight_axis),
    ]
    conv_inputs = ["x_dq", "w_dq"]
    if bias_int32:
        inits += [numpy_helper.from_array(np.zeros(4, np.int32), "b_q"),
                  numpy_helper.from_array(np.array(0.005, np.float32), "b_scale"),
                  numpy_helper.from_array(np.array(0, np.int32), "b_zero")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zero"], ["b_dq"], name="dq_bias"))
        conv_inputs.append("b_dq")
    nodes.append(helper.make_node("Conv", conv_inputs, ["y"], name="conv"))
    if q_feeds_relu:
        nodes.append(helper.make_node("Relu", ["x_q"], ["side"], name="relu_on_int8"))
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_clean_symmetric_graph_passes_both_rule_sets():
    model = _conv_graph()
    onnx.checker.check_model(model)
    assert check_qdq(model, "tensorrt") == [] and check_qdq(model, "onnxruntime") == []


@pytest.mark.parametrize("broken, expected", [
    (dict(bias_int32=True), "dq_bias': int32 quantized data"),
    (dict(act_type=np.uint8, act_zero=128), "q_x': uint8 quantized data"),
    (dict(act_zero=3), "q_x': non-zero zero point"),
    (dict(weight_axis=1, weight_scales=3), "Conv weights need axis 0"),
    (dict(act_per_channel=True), "per-channel scales on an activation"),
    (dict(q_feeds_relu=True), "quantized output feeds Relu"),
    (dict(computed_scale=True), "computed at run time"),
    (dict(opset=10), "per-axis scales need opset 13"),
])
def test_each_tensorrt_rule(broken, expected):
    problems = check_qdq(_conv_graph(**broken), "tensorrt")
    assert any(expected in p for p in problems), problems


def test_structural_rules_apply_to_onnxruntime_too():
    assert check_qdq(_conv_graph(bias_int32=True), "onnxruntime") == []  # ONNX Runtime runs INT32 biases
    assert check_qdq(_conv_graph(act_type=np.uint8, act_zero=128), "onnxruntime") == []
    wrong_count = _conv_graph(weight_scales=3)  # 3 scales for 4 output channels
    assert any("3 scales for 4 channels on axis 0" in p for p in check_qdq(wrong_count, "onnxruntime"))


def test_require_raises_one_line(tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(_conv_graph(bias_int32=True, act_zero=2), str(path))
    with pytest.raises(TledgeError, match=r"bad.onnx is not a valid Q/DQ graph for tensorrt \(\d problem") as info:
        require_qdq_ok(path, "tensorrt")
    assert "\n" not in str(info.value)
    with pytest.raises(TledgeError, match="unknown Q/DQ check target"):
        check_qdq(path, "openvino")


@pytest.fixture(scope="module")
def both_flavours(tmp_path_factory):
    """The two INT8 files quantize_int8 writes for a tiny MobileNetV2 (each checked inside quantize_int8)."""
    import cv2
    import torch

    from tledge.card import ModelCard
    from tledge.exporting.int8 import quantize_int8
    from tledge.exporting.onnx_export import export_onnx
    from tledge.models.backbones import create_model

    base = tmp_path_factory.mktemp("qdq")
    kwargs = {"width_mult": 0.25, "inverted_residual_setting": [[1, 8, 1, 1]]}
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 3, **kwargs).eval()
    card = ModelCard("mobilenet_v2", ["a", "b", "c"], input_size=(32, 32), arch_kwargs=kwargs)
    fp32 = export_onnx(model, card, base / "model.onnx")
    rng = np.random.default_rng(0)
    images = []
    for i in range(32):
        path = base / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        images.append(path)
    return {flavour: quantize_int8(fp32, base / f"{flavour}.onnx", images, flavour=flavour)
            for flavour in ("s8s8", "u8s8")}


def test_tensorrt_flavour_passes_and_keeps_biases_in_float(both_flavours):
    path = both_flavours["s8s8"]
    assert check_qdq(path, "tensorrt") == []
    model = onnx.load(str(path))
    int32 = {i.name for i in model.graph.initializer if i.data_type == TensorProto.INT32}
    assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) > 0


def test_cpu_flavour_is_refused_by_tensorrt_rules_only(both_flavours):
    path = both_flavours["u8s8"]
    assert check_qdq(path, "onnxruntime") == []
    problems = check_qdq(path, "tensorrt")
    assert any("uint8 quantized data" in p for p in problems)
    assert any("non-zero zero point" in p for p in problems)
    assert any("int32 quantized data" in p for p in problems)  # the CPU flavour keeps INT32 biases


def test_quantize_int8_refuses_to_write_a_graph_that_fails_the_check(both_flavours, monkeypatch, tmp_path):
    """The check is wired into quantize_int8 (so every INT8 file the project or its tests write is checked),
    with the TensorRT rules for the TensorRT flavour."""
    from tledge.exporting import qdq_check
    from tledge.exporting.int8 import quantize_int8

    seen = []

    def failing(model, target="tensorrt"):
        seen.append(target)
        return ["DequantizeLinear 'x': int32 quantized data"]

    monkeypatch.setattr(qdq_check, "check_qdq", failing)
    base = both_flavours["s8s8"].parent
    images = sorted(base.glob("*.png"))
    out = tmp_path / "model.int8.trt.onnx"
    with pytest.raises(TledgeError, match="fails the Q/DQ check.*int32"):
        quantize_int8(base / "model.onnx", out, images, flavour="s8s8")
    assert seen == ["tensorrt"] and not out.exists()
