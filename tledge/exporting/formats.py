"""The export format table: one row per format, read by the pipeline, the CLI help and the option check.

Each row says which file it writes, whether it needs an NVIDIA GPU, and which export options mean something
for it. An option that none of the requested formats uses is an error (`ExportOptionError`, raised by
export.options.check_options), never silently dropped or rewritten: `tledge export run --formats onnx
--workspace 512` says that `--workspace` only applies to TensorRT formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from tledge.errors import TledgeError
from tledge.exporting import (int8, int8_calibration, onnx_export, onnx_fp16, openvino_ir, preprocess_graph,
                              tensorrt_build)

ONNX_OPTIONS = frozenset({"opset", "exporter", "batch"})
CALIB_OPTIONS = frozenset({"calib_data", "calib_images", "calib_method", "calib_percentile", "int8_flavours",
                           "nodes_to_exclude", "int8_budget", "int8_methods", "int8_recipe", "int8_report",
                           "int8_max_groups", "int8_search", "qat_epochs", "qat_lr", "qat_images"})
TRT_OPTIONS = frozenset({"max_batch", "workspace"})
FORMAT_OPTIONS = ONNX_OPTIONS | CALIB_OPTIONS | TRT_OPTIONS  # checked against the formats asked for
INT8_TRT_STEP = "int8-trt"
# The symmetric S8S8 QDQ model that TensorRT needs (written when trt-int8 is asked for, or --int8-flavours both).
INT8_TRT_FILENAME = "model.int8.trt.onnx"

@dataclass(frozen=True)
class ExportFormat:
    """One export step: a format users ask for, or a step formats need (the INT8 calibration, the symmetric
    INT8 ONNX TensorRT builds from). Its module owns the build; this row says what it reads and writes."""

    name: str
    filename: str | Callable[[Any], str | None]  # in the export folder; a function of the options when it varies
    build: Callable  # (ExportContext, {needed step: its output}, target path) -> Path, or the step's typed output
    needs: tuple[str, ...] = ("onnx",)  # the steps whose outputs it reads
    precision: str = "fp32"  # the parity gate it is judged by: fp32, fp16 or int8 ("" = no artifact to judge)
    options: frozenset = ONNX_OPTIONS  # export options it uses (any other given option is an error)
    description: str = ""
    needs_gpu: bool = False
    requires: tuple[str, str] | None = None  # (module, extra) that must import before any work: ("openvino", ...)
    asked: bool = True  # a name users give to --formats (False: a step that formats or options pull in)
    wanted: Callable[[Any, set], bool] | None = None  # a step some options ask for besides --formats
    label: Callable[[Any], str] | None = None  # its row's name when that varies with the options
    row_when_pulled: bool = False  # a row even when only another step needs it (a file users deploy)

    def row_name(self, options) -> str:
        return self.label(options) if self.label is not None else self.name


def _cpu_and_trt_flavours(options, names: set) -> bool:
    return "int8" in names and options.int8_flavours == "both"


def _preprocessing_asked(options, names: set) -> bool:
    return preprocess_graph.filename(options) is not None


# In dependency order: a step comes after every step it needs.
STEPS: tuple[ExportFormat, ...] = (
    ExportFormat("onnx", "model.onnx", onnx_export.build, needs=(),
                 description="ONNX FP32, dynamic batch, model card in metadata (ONNX Runtime, OpenVINO, TensorRT)"),
    ExportFormat("int8-calibration", "", int8_calibration.build, precision="", options=ONNX_OPTIONS | CALIB_OPTIONS,
                 asked=False, description="QAT and the INT8 search on val, or one calibration pass"),
    ExportFormat("int8", "model.int8.onnx", int8.quantize_step("u8s8"), needs=("int8-calibration",),
                 precision="int8", options=ONNX_OPTIONS | CALIB_OPTIONS,
                 description="ONNX QDQ INT8, per-channel weights, calibrated on real images (fast CPU flavour)"),
    ExportFormat(INT8_TRT_STEP, INT8_TRT_FILENAME, int8.quantize_step("s8s8"), needs=("int8-calibration",),
                 precision="int8", options=ONNX_OPTIONS | CALIB_OPTIONS, asked=False, wanted=_cpu_and_trt_flavours,
                 row_when_pulled=True,
                 description="ONNX QDQ INT8, symmetric (S8S8): what TensorRT builds its INT8 engine from"),
    ExportFormat("onnx-preprocessed", preprocess_graph.filename, preprocess_graph.build, asked=False,
                 wanted=_preprocessing_asked, label=preprocess_graph.row_name, description="--input/--output: the preprocessing inside the graph"),
    ExportFormat("trt-fp16", "model.fp16.engine", tensorrt_build.engine_step("fp16", "onnx"), precision="fp16",
                 options=ONNX_OPTIONS | TRT_OPTIONS, needs_gpu=True,
                 description="TensorRT FP16 engine (needs an NVIDIA GPU and the tensorrt package)"),
    ExportFormat("trt-int8", "model.int8.engine", tensorrt_build.engine_step("int8", INT8_TRT_STEP),
                 needs=(INT8_TRT_STEP,), precision="int8", options=ONNX_OPTIONS | CALIB_OPTIONS | TRT_OPTIONS,
                 needs_gpu=True, description="TensorRT INT8 engine from the symmetric QDQ ONNX (explicit quantization)"),
    ExportFormat("onnx-fp16", "model.fp16.onnx", onnx_fp16.build, precision="fp16",
                 description="ONNX FP16, float32 inputs/outputs (CUDA / TensorRT providers)"),
    ExportFormat("openvino", "model.openvino.xml", openvino_ir.build_from("onnx"), requires=("openvino", "openvino"),
                 description="OpenVINO IR FP32 (.xml + .bin) from model.onnx (needs the openvino extra)"),
    ExportFormat("openvino-int8", "model.int8.openvino.xml", openvino_ir.build_from("int8"), needs=("int8",),
                 precision="int8", options=ONNX_OPTIONS | CALIB_OPTIONS, requires=("openvino", "openvino"),
                 description="OpenVINO IR INT8 from the CPU QDQ ONNX model.int8.onnx (needs the openvino extra)"),
)
STEP_BY_NAME = {step.name: step for step in STEPS}
FORMATS: dict[str, ExportFormat] = {step.name: step for step in STEPS if step.asked}  # what --formats takes


def plan(options, names: Iterable[str]) -> list[tuple[ExportFormat, bool]]:
    """(step, shown as a table row) for the formats `names` and what they need, in dependency order: the
    requested formats and the steps options ask for are rows; what they pull in runs without a row."""
    names = set(names)
    shown = {s.name for s in STEPS if s.name in names or (s.wanted is not None and s.wanted(options, names))}
    needed, todo = set(shown), list(shown)
    while todo:
        for dep in STEP_BY_NAME[todo.pop()].needs:
            if dep not in needed:
                needed.add(dep)
                todo.append(dep)
    return [(s, s.name in shown or s.row_when_pulled) for s in STEPS if s.name in needed]


def target_path(out_dir: str | Path, step: ExportFormat, options) -> Path | None:
    """Where a step writes its file (None: it writes none)."""
    name = step.filename(options) if callable(step.filename) else step.filename
    return Path(out_dir) / name if name else None


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
