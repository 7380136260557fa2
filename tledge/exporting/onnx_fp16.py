"""The `onnx-fp16` format: an FP16 copy of model.onnx for GPUs (the CUDA or TensorRT provider), float32 in and out.

The graph surgery is tledge.exporting.fp16's (the converter the strongly typed TensorRT path already uses):
float32 weights and constants become float16, a Cast follows the graph input and precedes the output, so the
card, the preprocessing and every caller stay float32. onnxconverter-common was not used: it pins old
onnx/protobuf releases and is in maintenance mode, and fp16.py does the same job with `onnx` alone (its
result passes onnx.checker with full_check). ONNX Runtime's CPU provider runs the file too (it inserts
float32 casts around the ops it has no float16 kernel for, then folds the weight casts: on an x86 CPU the
tiny MobileNetV2's convolutions ran as float32 NCHWc kernels), so parity runs wherever the export runs; on the
CPU it measures the float16 rounding of weights and edges, not float16 arithmetic: `tledge verify
model.fp16.onnx` on the GPU checks that.

The card says precision "fp16", which is the parity gate the file is judged by (agreement and Δacc, not
FP32's 1e-4 logit distance).
"""

from __future__ import annotations

from pathlib import Path

from tledge.card import card_from_onnx, embed_in_onnx
from tledge.errors import require

FILENAME = "model.fp16.onnx"


def export_onnx_fp16(src: str | Path, dst: str | Path) -> Path:
    """Write the FP16 ONNX of the FP32 ONNX `src` to `dst`, with src's card (now precision fp16) in its metadata."""
    from tledge.atomic import atomic_write_with
    from tledge.exporting.fp16 import convert_to_fp16

    onnx = require("onnx", "export", "the onnx-fp16 format")
    dst = Path(dst)
    card = card_from_onnx(src)
    convert_to_fp16(src, dst)
    model = onnx.load(str(dst))
    embed_in_onnx(model, card.replace(precision="fp16",
                                      extra={**card.extra, "fp16": {"source": Path(src).name, "io": "float32"}}))
    atomic_write_with(dst, lambda tmp: onnx.save(model, str(tmp)))
    return dst


def build(ctx, inputs, target: Path) -> Path:
    return export_onnx_fp16(inputs["onnx"], target)
