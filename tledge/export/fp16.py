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

from pathlib import Path

import numpy as np

from tledge.atomic import atomic_write_with
from tledge.errors import TledgeError, require

# (op_type, input index) pairs that stay float32 in a float16 graph.
KEEP_FLOAT32_INPUTS = {("Resize", 2), ("Upsample", 1)}
FP16_MAX = 65504.0


def convert_to_fp16(src: str | Path, dst: str | Path, min_opset: int | None = None) -> Path:
    """Write an FP16 copy of the ONNX at `src` to `dst` (I/O stay float32); returns dst.

    `min_opset` raises the default-domain opset (19 lets Q/DQ scales be float16, so a QDQ graph's float
    region becomes FP16 too: DequantizeLinear then outputs float16)."""
    onnx = require("onnx", "export", "FP16 conversion")
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    for opset in model.opset_import:
        if min_opset and opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, int(min_opset))
    keep32 = {node.input[i] for node in graph.node for op, i in KEEP_FLOAT32_INPUTS
              if node.op_type == op and len(node.input) > i}

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


def _to_fp16_tensor(numpy_helper, tensor):
    values = numpy_helper.to_array(tensor).astype(np.float32)
    clipped = np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(clipped, tensor.name)
