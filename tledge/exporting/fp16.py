"""FP32 ONNX → FP16 ONNX with float32 inputs and outputs, for strongly typed TensorRT (10.12+ / 11).

A strongly typed TensorRT network takes its precisions from the ONNX graph, so an FP16 engine needs an
FP16 graph. This is a small converter written with the `onnx` package alone rather than a dependency
(onnxconverter-common is in maintenance mode and pins old protobuf/onnx versions; NVIDIA ModelOpt's
AutoCast is a large CUDA-oriented install): every float32 initializer and constant becomes float16, Casts to
float become Casts to float16, and a Cast sits after the graph input and before the graph output so callers
still pass and receive float32 (the card and the runtime do not change).

Inputs that the ONNX spec requires in float32 whatever the data type (Resize scales, for instance) keep
float32. Classification CNNs (Conv, Gemm, pooling, activations, Add, Mul) are what this is for; a graph
with other float-only inputs is reported rather than silently broken (onnx.checker + shape inference run).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tledge.atomic import atomic_write_with
from tledge.errors import TledgeError, require

log = logging.getLogger(__name__)

# (op_type, input index) pairs that stay float32 in a float16 graph.
KEEP_FLOAT32_INPUTS = {("Resize", 2), ("Upsample", 1)}
FP16_MAX = 65504.0
FP16_MIN_NORMAL = float(np.finfo(np.float16).tiny)  # 6.1e-05: below it float16 is subnormal, below ~3e-08 zero
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def convert_to_fp16(src: str | Path, dst: str | Path, min_opset: int | None = None) -> Path:
    """Write an FP16 copy of the ONNX at `src` to `dst` (I/O stay float32); returns dst.

    `min_opset` raises the default-domain opset (19 lets Q/DQ scales be float16, so a QDQ graph's float
    region becomes FP16 too: DequantizeLinear then outputs float16). Q/DQ scales below float16's smallest
    normal are raised to it first (see raise_tiny_scales); how many is logged."""
    onnx = require("onnx", "export", "FP16 conversion")
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    for opset in model.opset_import:
        if min_opset and opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, int(min_opset))
    keep32 = {node.input[i] for node in graph.node for op, i in KEEP_FLOAT32_INPUTS
              if node.op_type == op and len(node.input) > i}
    raised = raise_tiny_scales(graph)
    if raised:
        log.debug(f"  fp16: {len(raised)} Q/DQ scale tensor(s) had values below float16's smallest normal "
                  f"({FP16_MIN_NORMAL:.2g}); raised to it, their INT8 weights requantized ({', '.join(raised[:3])}"
                  f"{', ...' if len(raised) > 3 else ''})")

    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            graph.initializer[index].CopyFrom(_to_fp16_tensor(numpy_helper, init))
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT and node.output[0] not in keep32:
                    attr.t.CopyFrom(_to_fp16_tensor(numpy_helper, attr.t))
        elif node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        elif node.op_type in ("ConstantOfShape",):
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(_to_fp16_tensor(numpy_helper, attr.t))

    # Boundary casts: graph input float32 → float16 inside; float16 inside → float32 graph output.
    new_nodes = []
    for graph_input in graph.input:
        if graph_input.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{graph_input.name}_fp16"
        for node in graph.node:
            node.input[:] = [inner if name == graph_input.name else name for name in node.input]
        new_nodes.append(helper.make_node("Cast", [graph_input.name], [inner], to=TensorProto.FLOAT16,
                                          name=f"{graph_input.name}_to_fp16"))
    tail_nodes = []
    for graph_output in graph.output:
        if graph_output.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{graph_output.name}_fp16"
        for node in graph.node:
            node.output[:] = [inner if name == graph_output.name else name for name in node.output]
            node.input[:] = [inner if name == graph_output.name else name for name in node.input]
        tail_nodes.append(helper.make_node("Cast", [inner], [graph_output.name], to=TensorProto.FLOAT,
                                           name=f"{graph_output.name}_to_fp32"))
    nodes = new_nodes + list(graph.node) + tail_nodes
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale float32 annotations; re-inferred below

    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise TledgeError(f"FP16 conversion produced an invalid graph ({str(exc).splitlines()[0][:200]}); "
                          "this model needs weakly typed TensorRT (≤ 10.11) or ModelOpt AutoCast") from None
    atomic_write_with(Path(dst), lambda tmp: onnx.save(model, str(tmp)))
    return Path(dst)


def raise_tiny_scales(graph) -> list[str]:
    """Raise Q/DQ scale values below float16's smallest normal to it, in place, before the float16 cast.

    Why not keep such scales in float32: with opset 19 DequantizeLinear outputs the scale's type, so a float32
    scale would need a Cast into the float16 layer, between the DQ and the Conv that TensorRT fuses into an
    INT8 kernel. Why not let them round: per-channel weight scales below ~3e-08 become 0 (an invalid
    Q/DQ graph) and below 6.1e-05 lose precision as subnormals. Such a channel's weights are all smaller
    than 127 × 6.1e-05 ≈ 0.0078, so raising its scale and requantizing its INT8 weights at the raised
    scale (constant weights behind a DequantizeLinear) changes each weight by at most half a step (3e-05).
    An activation scale is shared by its Q and DQ, so raising it only coarsens that tensor's steps.
    Returns the names of the scale tensors changed."""
    from onnx import TensorProto, numpy_helper

    inits = {init.name: init for init in graph.initializer}
    raised = []
    for node in graph.node:
        if node.op_type not in QDQ_OPS or len(node.input) < 2:
            continue
        scale_init = inits.get(node.input[1])
        if scale_init is None or scale_init.data_type != TensorProto.FLOAT or scale_init.name in raised:
            continue
        scale = numpy_helper.to_array(scale_init).astype(np.float32)
        tiny = (scale > 0) & (scale < FP16_MIN_NORMAL)
        if not tiny.any():
            continue
        new_scale = np.where(tiny, np.float32(FP16_MIN_NORMAL), scale).astype(np.float32)
        for user in graph.node:  # constant INT8 weights dequantized with this scale: requantize them
            if user.op_type == "DequantizeLinear" and len(user.input) > 1 and user.input[1] == scale_init.name:
                weights = inits.get(user.input[0])
                if weights is not None and weights.data_type in (TensorProto.INT8, TensorProto.UINT8):
                    weights.CopyFrom(_requantized(numpy_helper, weights, scale, new_scale, user, inits))
        scale_init.CopyFrom(numpy_helper.from_array(new_scale.reshape(scale.shape), scale_init.name))
        raised.append(scale_init.name)
    return raised


def _requantized(numpy_helper, weights, old_scale, new_scale, node, inits):
    """q' = round(q · s / s') around the zero point, on the node's axis (per channel) or per tensor."""
    q = numpy_helper.to_array(weights)
    zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits else 0
    ratio = (old_scale / new_scale).astype(np.float64)
    zero = np.asarray(zero, dtype=np.float64)
    if ratio.ndim == 1 and ratio.size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % q.ndim
        shape = [1] * q.ndim
        shape[axis] = ratio.size
        ratio, zero = ratio.reshape(shape), zero.reshape(shape) if zero.ndim == 1 else zero
    info = np.iinfo(q.dtype)
    lo = -127 if q.dtype == np.int8 else info.min  # TensorRT's symmetric INT8 range
    values = np.clip(np.round((q.astype(np.float64) - zero) * ratio + zero), lo, info.max).astype(q.dtype)
    return numpy_helper.from_array(values, weights.name)


def _to_fp16_tensor(numpy_helper, tensor):
    values = numpy_helper.to_array(tensor).astype(np.float32)
    clipped = np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(clipped, tensor.name)
