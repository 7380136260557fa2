"""The export format table: one row per format, read by the pipeline, the CLI help and the option check.

Each row says which file it writes, whether it needs an NVIDIA GPU, and which export options mean something
for it. An option that none of the requested formats uses is an error (`ExportOptionError`, raised by
export.options.check_options), never silently dropped or rewritten: `tledge export run --formats onnx
--workspace 512` says that `--workspace` only applies to TensorRT formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tledge.errors import TledgeError

ONNX_OPTIONS = frozenset({"opset", "exporter", "batch"})
CALIB_OPTIONS = frozenset({"calib_data", "calib_images", "calib_method", "calib_percentile", "int8_flavours",
                           "nodes_to_exclude", "int8_budget", "int8_methods", "int8_recipe", "int8_report",
                           "int8_max_groups", "int8_search", "qat_epochs", "qat_lr", "qat_images"})
TRT_OPTIONS = frozenset({"max_batch", "workspace"})
FORMAT_OPTIONS = ONNX_OPTIONS | CALIB_OPTIONS | TRT_OPTIONS  # checked against the formats asked for

@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str  # file written into the export folder
    needs_gpu: bool
    options: frozenset  # export options this format uses
    precision: str  # what its parity gate is judged as: "fp32", "fp16" or "int8"
    description: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", "model.onnx", False, ONNX_OPTIONS, "fp32",
                     "ONNX FP32, dynamic batch, model card in metadata (ONNX Runtime, OpenVINO, TensorRT)"),
        ExportFormat("int8", "model.int8.onnx", False, ONNX_OPTIONS | CALIB_OPTIONS, "int8",
                     "ONNX QDQ INT8, per-channel weights, calibrated on real images (fast CPU flavour)"),
        ExportFormat("trt-fp16", "model.fp16.engine", True, ONNX_OPTIONS | TRT_OPTIONS, "fp16",
                     "TensorRT FP16 engine (needs an NVIDIA GPU and the tensorrt package)"),
        ExportFormat("trt-int8", "model.int8.engine", True, ONNX_OPTIONS | CALIB_OPTIONS | TRT_OPTIONS, "int8",
                     "TensorRT INT8 engine from the symmetric QDQ ONNX (explicit quantization)"),
        # [issue 23 wiring] rows for tledge/exporting/onnx_fp16.py and tledge/exporting/openvino_ir.py
        ExportFormat("onnx-fp16", "model.fp16.onnx", False, ONNX_OPTIONS, "fp16",
                     "ONNX FP16, float32 inputs/outputs (CUDA / TensorRT providers)"),
        ExportFormat("openvino", "model.openvino.xml", False, ONNX_OPTIONS, "fp32",
                     "OpenVINO IR FP32 (.xml + .bin) from model.onnx (needs the openvino extra)"),
        ExportFormat("openvino-int8", "model.int8.openvino.xml", False, ONNX_OPTIONS | CALIB_OPTIONS, "int8",
                     "OpenVINO IR INT8 from the CPU QDQ ONNX model.int8.onnx (needs the openvino extra)"),
    )
}
# The symmetric S8S8 QDQ model that TensorRT needs (written when trt-int8 is asked for, or --int8-flavours both).
INT8_TRT_FILENAME = "model.int8.trt.onnx"


def parse_formats(value: str | Iterable[str]) -> list[ExportFormat]:
    """"onnx,int8" or ["onnx", "int8"] → format rows, in table order, without duplicates."""
    names = [n.strip().lower() for n in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    if not names:
        raise TledgeError(f"no export format given; choose from {', '.join(FORMATS)}")
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise TledgeError(f"unknown export format {', '.join(map(repr, unknown))}; choose from {', '.join(FORMATS)}")
    return [FORMATS[name] for name in FORMATS if name in names]


def artifact_path(out_dir: str | Path, fmt: ExportFormat) -> Path:
    return Path(out_dir) / fmt.filename
