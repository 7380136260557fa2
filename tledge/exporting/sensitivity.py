"""Which parts of a network lose the most when quantized: layer groups, and their sensitivity on val images.

A group is one block of the network as the ONNX node names show it (`/features/features.3/...` →
`features.3`; pool, pre_logits and head each form one group), so a 224-px MobileNetV2 has about 20
groups, not 150 nodes. Sensitivity of a group = how far from FP32 the model gets when that group
*alone* is quantized and everything else stays in float (the calibration is reused, so each probe is one
quantize + one val pass). This is preferred over the reverse probe (one group kept in float, the rest
INT8) because a damaged tensor is quantized on both sides of a group boundary (as the output of one
block and the input of the next): keeping either block alone in float repairs nothing, so the reverse
probe ranks both at zero, while quantizing either alone shows the damage. The measure is continuous (mean
KL divergence of softmax outputs to FP32, plus top-1 agreement), so it ranks groups even on a small val
set where accuracy moves in coarse steps.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

# Nodes whose float fallback only moves a Q/DQ pair around; a group made only of these is not a candidate.
_PASSIVE_OPS = {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Flatten", "Constant", "Identity"}
_COMPUTE_OPS = {"Conv", "Gemm", "MatMul", "ConvTranspose"}


@dataclass
class LayerGroup:
    name: str
    nodes: list[str]  # node names (after quant_pre_process)
    macs: float  # approximate multiply-accumulates of its Conv/Gemm nodes (cost of keeping it in float)


def group_key(node_name: str) -> str:
    """The block a node belongs to: `/features/features.3/conv/...` → `features.3`; `/head/Gemm` → `head`."""
    parts = [p for p in node_name.strip("/").split("/") if p]
    if not parts:
        return node_name or "?"
    if len(parts) >= 2 and re.fullmatch(rf"{re.escape(parts[0])}\.\d+", parts[1]):
        return parts[1]
    if len(parts) == 1:  # a top-level op without a module path (e.g. "Flatten_3"): its own op kind
        return re.sub(r"[_.]?\d+$", "", parts[0]) or parts[0]
    return parts[0]


def layer_groups(prepared_onnx: str | Path) -> list[LayerGroup]:
    """The candidate groups of a pre-processed FP32 model, in graph order, with their approximate cost."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(prepared_onnx))
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - costs are only used to break ties
        pass
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    inits = {init.name: list(init.dims) for init in model.graph.initializer}
    groups: "OrderedDict[str, LayerGroup]" = OrderedDict()
    for node in model.graph.node:
        if not node.name:
            continue
        key = group_key(node.name)
        group = groups.setdefault(key, LayerGroup(key, [], 0.0))
        group.nodes.append(node.name)
        if node.op_type in _COMPUTE_OPS and len(node.input) > 1 and node.input[1] in inits:
            weight = inits[node.input[1]]
            out = shapes.get(node.output[0], [])
            spatial = int(np.prod(out[2:])) if len(out) > 2 else 1
            group.macs += float(np.prod(weight)) * spatial
    model_ops = {n.name: n.op_type for n in model.graph.node}
    return [g for g in groups.values() if any(model_ops[n] not in _PASSIVE_OPS for n in g.nodes)]


def kl_to_reference(reference: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(softmax(reference) || softmax(logits)) over images."""
    def log_softmax(z):
        z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    lp, lq = log_softmax(reference), log_softmax(logits)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))


@dataclass
class Sensitivity:
    group: str
    nodes: int
    macs: float
    kl: float  # mean KL to FP32 with only this group quantized (its damage)
    agreement: float  # % top-1 agreement with FP32 with only this group quantized
    seconds: float

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def measure_sensitivity(groups: Sequence[LayerGroup], evaluate: Callable[[list[str]], np.ndarray],
                        reference: np.ndarray) -> list[Sensitivity]:
    """Quantize each group alone; `evaluate(nodes_kept_in_float)` returns val logits. Most damaging first."""
    import time

    results = []
    for group in groups:
        started = time.perf_counter()
        own = set(group.nodes)
        logits = evaluate([n for g in groups for n in g.nodes if n not in own])
        kl = kl_to_reference(reference, logits)
        agreement = 100.0 * float(np.mean(logits.argmax(1) == reference.argmax(1)))
        results.append(Sensitivity(group.name, len(group.nodes), group.macs, kl, agreement,
                                   time.perf_counter() - started))
        log.debug(f"    sensitivity {group.name:<14} alone in INT8: KL {kl:.5f}, agreement {agreement:.2f}%")
    results.sort(key=lambda s: (-s.kl, s.agreement, s.macs))
    return results
