"""A static check of Q/DQ (QuantizeLinear/DequantizeLinear) ONNX graphs, without a GPU or TensorRT.

Two rule sets:
- "tensorrt": what TensorRT's ONNX parser and its explicit-quantization builder accept. Quantized data is
  INT8 (FP8/INT4 are accepted by recent parsers; tledge writes neither), never UINT8 and never INT32 (an
  INT32 bias DQ, which ONNX Runtime's quantize_static writes by default, is refused); zero points are 0
  (TensorRT INT8 is symmetric); scales are constant, positive and finite; activations are quantized per
  tensor, weights per tensor or per output channel (axis 0 for Conv/Gemm(transB=1) weights, 1 for
  ConvTranspose/MatMul/Gemm(transB=0)); a QuantizeLinear output feeds DequantizeLinear nodes only (an
  integer tensor cannot reach any other layer); per-axis scales need opset 13 or newer.
- "onnxruntime": the structural rules only (constant scales and zero points of matching shape, zero point
  type equal to the data type, an axis inside the tensor's rank, Q feeding DQ), i.e. what any consumer
  needs. The CPU flavour (U8 activations with zero points) passes this and fails "tensorrt".

`check_qdq(model_or_path, target)` returns a list of one-line problems (empty: the graph passes);
`require_qdq_ok` raises TledgeError listing the first few. It reads the graph only; nothing is executed.
"""

from __future__ import annotations

from pathlib import Path

from tledge.errors import TledgeError, require

TARGETS = ("tensorrt", "onnxruntime")
# ONNX TensorProto data types by number (kept here so the rules read without the onnx enum).
FLOAT, UINT8, INT8, INT32, FLOAT16, BFLOAT16 = 1, 2, 3, 6, 10, 16
FLOAT8 = {17, 18, 19, 20}
INT4 = 22
TYPE_NAMES = {FLOAT: "float32", UINT8: "uint8", INT8: "int8", INT32: "int32", FLOAT16: "float16",
              BFLOAT16: "bfloat16", INT4: "int4", **{t: "float8" for t in FLOAT8}}
TENSORRT_QUANT_TYPES = {INT8, INT4} | FLOAT8
SCALE_TYPES = {FLOAT, FLOAT16, BFLOAT16}
# Weight consumers and the axis of their output channels in the weight tensor.
OUTPUT_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}
SHOWN = 4


def check_qdq(model, target: str = "tensorrt") -> list[str]:
    """Problems found in a Q/DQ graph (a ModelProto or a path) under `target`'s rules; [] when it passes."""
    onnx = require("onnx", "export", "the Q/DQ check")
    from onnx import numpy_helper

    if target not in TARGETS:
        raise TledgeError(f"unknown Q/DQ check target {target!r}; choose from {', '.join(TARGETS)}")
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in graph.node for out in node.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph_outputs = {o.name for o in graph.output}

    problems: list[str] = []
    strict = target == "tensorrt"
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or node.domain not in ("", "ai.onnx"):
            continue
        label = f"{node.op_type} {node.name or node.output[0]!r}"
        scale_name = node.input[1] if len(node.input) > 1 else ""
        zero_name = node.input[2] if len(node.input) > 2 else ""
        scale = constants.get(scale_name)
        zero = constants.get(zero_name) if zero_name else None
        axis = _axis(node)
        if scale is None:
            problems.append(f"{label}: scale {scale_name!r} is computed at run time; it must be a constant")
            continue
        if zero_name and zero is None:
            problems.append(f"{label}: zero point {zero_name!r} is computed at run time; it must be a constant")
            continue

        if node.op_type == "DequantizeLinear":
            data_type = _elem_type(graph, node.input[0], constants)
            data_name = node.input[0]
        else:
            data_type = _dtype_code(zero) if zero is not None else _output_dtype(node)
            data_name = node.output[0]
        problems += _type_rules(label, data_type, zero, strict)
        problems += _scale_rules(label, scale, zero, axis, data_name, graph, constants, strict, opset)
        if scale.size > 1 and strict:
            problems += _per_channel_rules(label, node, axis, constants, consumers)
        if node.op_type == "QuantizeLinear":
            others = [c for c in consumers.get(node.output[0], []) if c.op_type != "DequantizeLinear"]
            if others or node.output[0] in graph_outputs:
                what = ", ".join(sorted({c.op_type for c in others})) or "a graph output"
                problems.append(f"{label}: its quantized output feeds {what}; only DequantizeLinear may read it")
        elif strict and node.input[0] not in constants:
            source = producers.get(node.input[0])
            if source is None or source.op_type != "QuantizeLinear":
                what = source.op_type if source is not None else "a graph input"
                problems.append(f"{label}: reads {what}, not a QuantizeLinear or a constant")
    return problems


def require_qdq_ok(path: str | Path, target: str = "tensorrt") -> None:
    """Raise a one-line TledgeError naming the first problems when `path` fails `target`'s rules."""
    problems = check_qdq(path, target)
    if problems:
        more = f" (+{len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise TledgeError(f"{Path(path).name} is not a valid Q/DQ graph for {target} ({len(problems)} problem(s)): "
                          + "; ".join(problems[:SHOWN]) + more)


# ----------------------------------------------------------------------------------------- rules
def _type_rules(label: str, data_type: int | None, zero, strict: bool) -> list[str]:
    problems = []
    name = TYPE_NAMES.get(data_type, f"type {data_type}")
    if data_type is None:
        return problems
    if zero is not None and _dtype_code(zero) != data_type:
        problems.append(f"{label}: zero point is {TYPE_NAMES.get(_dtype_code(zero), zero.dtype)} but the data is {name}")
    if strict:
        if data_type not in TENSORRT_QUANT_TYPES:
            problems.append(f"{label}: {name} quantized data; TensorRT's parser takes int8 (or fp8/int4) only")
        if zero is not None and zero.size and (zero.astype("float64") != 0).any():
            problems.append(f"{label}: non-zero zero point; TensorRT quantization is symmetric (zero point 0)")
    return problems


def _scale_rules(label, scale, zero, axis, data_name, graph, constants, strict, opset) -> list[str]:
    problems = []
    if _dtype_code(scale) not in SCALE_TYPES:
        problems.append(f"{label}: scale is {scale.dtype}; it must be float32/float16/bfloat16")
    elif not ((scale.astype("float64") > 0).all() and (abs(scale.astype("float64")) < float("inf")).all()):
        problems.append(f"{label}: scale has zero, negative or non-finite values")
    if zero is not None and zero.shape != scale.shape:
        problems.append(f"{label}: scale shape {list(scale.shape)} and zero point shape {list(zero.shape)} differ")
    if scale.ndim > 1:
        problems.append(f"{label}: scale has rank {scale.ndim}; per-tensor (scalar) or per-axis (1-D) only")
    elif scale.ndim == 1 and scale.size > 1:
        shape = _shape(graph, data_name, constants)
        if shape is not None:
            rank_axis = axis if axis >= 0 else axis + len(shape)
            if not 0 <= rank_axis < len(shape):
                problems.append(f"{label}: axis {axis} is outside the tensor's rank {len(shape)}")
            elif isinstance(shape[rank_axis], int) and shape[rank_axis] > 0 and shape[rank_axis] != scale.size:
                problems.append(f"{label}: {scale.size} scales for {shape[rank_axis]} channels on axis {axis}")
        if strict and opset < 13:
            problems.append(f"{label}: per-axis scales need opset 13 or newer (this graph is opset {opset})")
    return problems


def _per_channel_rules(label, node, axis, constants, consumers) -> list[str]:
    """TensorRT: per-channel on constant weights only, along the consumer's output-channel axis."""
    if node.op_type == "QuantizeLinear" or node.input[0] not in constants:
        return [f"{label}: per-channel scales on an activation; TensorRT quantizes activations per tensor"]
    rank = constants[node.input[0]].ndim
    problems = []
    for consumer in consumers.get(node.output[0], []):
        wanted = _output_channel_axis(consumer)
        if wanted is not None and (axis % max(rank, 1)) != wanted % max(rank, 1):
            problems.append(f"{label}: per-channel axis {axis}, but {consumer.op_type} weights need axis {wanted}")
    return problems


# ----------------------------------------------------------------------------------------- helpers
def _axis(node) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(attr.i)
    return 1


def _output_dtype(node) -> int:
    """A QuantizeLinear without a zero point writes uint8 (opset 21 may say otherwise with output_dtype)."""
    for attr in node.attribute:
        if attr.name == "output_dtype" and attr.i:
            return int(attr.i)
    return UINT8


def _output_channel_axis(node) -> int | None:
    if node.op_type == "Gemm":
        trans_b = next((int(a.i) for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return OUTPUT_CHANNEL_AXIS.get(node.op_type)


def _dtype_code(array) -> int:
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(array.dtype))


def _elem_type(graph, name: str, constants) -> int | None:
    if name in constants:
        return _dtype_code(constants[name])
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.name == name and info.type.tensor_type.elem_type:
            return int(info.type.tensor_type.elem_type)
    return None


def _shape(graph, name: str, constants):
    if name in constants:
        return list(constants[name].shape)
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.name == name and info.type.tensor_type.HasField("shape"):
            return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
    return None
