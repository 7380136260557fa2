"""`tledge export`: checkpoint → ONNX, INT8 ONNX, TensorRT engines, each checked against PyTorch.

Modules: formats (the format table), onnx_export, int8, fp16, tensorrt_build, parity, pipeline (export_run),
cli (the click command). Nothing here imports torch at import time.

`tledge.export(run, formats=[...])` calls `tledge.api.export` (this package is callable, see tledge/_callable.py).
"""

from tledge._callable import make_callable

make_callable(__name__, "tledge.api:export")
