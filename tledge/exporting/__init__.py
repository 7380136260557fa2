"""Exporting: a checkpoint to ONNX, INT8 ONNX and TensorRT engines, each checked against PyTorch.

Modules: formats (the format table), onnx_export, int8, fp16, tensorrt_build, pipeline (export_run), checks
(parity of every artifact). Nothing here imports torch at import time. The job is the function `tledge.export`."""
