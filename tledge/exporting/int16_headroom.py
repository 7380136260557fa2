"""Can a CPU INT8 graph saturate ONNX Runtime's int16 intermediate on x86 CPUs without VNNI?

ONNX Runtime's u8s8 kernels on AVX2-only CPUs multiply uint8 activations by int8 weights and add each pair
of adjacent products into a saturating int16 (VPMADDUBSW) before widening to int32; CPUs with VNNI (and
ARM's dot-product kernels) accumulate in int32 directly. A pair can reach 2·255·|w|max, so a graph whose
int8 weights all satisfy |w| <= 64 (7-bit weights) cannot saturate: its integer results are the same on
every x86 kind. `pair_sum_bound` reads that bound off the graph; nothing is executed.
"""

from __future__ import annotations

from pathlib import Path

from tledge.errors import require

INT16_MAX = 32767
UINT8_MAX = 255
WEIGHT_CONSUMERS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def pair_sum_bound(model) -> tuple[int, str]:
    """(the largest |a1·w1 + a2·w2| any uint8×int8 weight pair of the graph can reach, the weight that reaches it)."""
    onnx = require("onnx", "export", "the int16 headroom check")
    from onnx import numpy_helper

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model), load_external_data=False)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    bound, where = 0, ""
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in initializers:
            continue
        if not any(op in WEIGHT_CONSUMERS for op in consumers.get(node.output[0], [])):
            continue
        weights = numpy_helper.to_array(initializers[node.input[0]])
        if weights.dtype.kind != "i" or weights.dtype.itemsize != 1:
            continue
        largest = int(abs(weights.astype("int32")).max()) if weights.size else 0
        if 2 * UINT8_MAX * largest > bound:
            bound, where = 2 * UINT8_MAX * largest, node.input[0]
    return bound, where


def saturation_problem(model) -> str | None:
    """One line when some weight pair can overflow int16 on AVX2-only CPUs, else None."""
    bound, where = pair_sum_bound(model)
    if bound <= INT16_MAX:
        return None
    return (f"weights {where!r} reach {bound} in an int16 pair sum (> {INT16_MAX}): ONNX Runtime's AVX2 kernels "
            "without VNNI would saturate; quantize with 7-bit weights (reduce_range)")
