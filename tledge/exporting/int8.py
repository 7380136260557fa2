"""FP32 ONNX → QDQ INT8 ONNX with ONNX Runtime's static quantization, calibrated on real images.

Steps: `quant_pre_process` (shape inference + graph optimisation), then `quantize_static` in QDQ format
with per-channel symmetric INT8 weights. Calibration images are real photos (the run's train split, or any
image folder), decoded and preprocessed by `tledge.preprocess` exactly like at run time, and streamed in
batches: nothing holds all of them in memory. There is no option for random or synthetic calibration
data, and fewer than MIN_CALIBRATION_IMAGES images is refused.

Two flavours of activations (weights are S8 per-channel symmetric in both):
- "u8s8": unsigned 8-bit activations with a zero point. On x86 CPUs without VNNI, ONNX Runtime runs this
  3-4× faster than S8S8 (measured, see ../shared/FIELD-NOTES.md): it is the CPU artifact model.int8.onnx.
- "s8s8": symmetric signed activations, zero point 0, biases kept in float (`QuantizeBias: False`; TensorRT's
  parser refuses INT32 DequantizeLinear inputs): what TensorRT's explicit quantization accepts. It is the
  TensorRT input model.int8.trt.onnx.
Every file is checked by tledge.exporting.qdq_check before it is written (the TensorRT rules for s8s8).

Calibration methods: minmax, entropy, percentile. Memory is bounded for all three by feeding the
calibrator one batch per `collect_data` call (ONNX Runtime's strided calibration loop:
`CalibStridedMinMax=1` with a reader that has `__len__`/`set_range`; ranges and histograms are merged
across calls). Histogram calibrators (entropy, percentile) otherwise keep every intermediate output of
one `collect_data` call, which is how entropy on 512 images at 224 px ran out of 24 GiB; and they stack
the outputs, so batches of different sizes cannot share a call. In ONNX Runtime 1.32
`CalibMaxIntermediateOutputs` is read by the MinMax calibrator only, and there it clears the collected
outputs without merging their ranges, so tledge does not rely on it. Calibration runs once: its
ranges are cached to JSON and reused for the second flavour.

Parameters shaped for an accuracy search to come (issue 7): `method`, `percentile` and `nodes_to_exclude`
(node names kept in float) are plain arguments and recorded in the card.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tledge import preprocess
from tledge.atomic import atomic_write_with
from tledge.card import ModelCard, card_from_onnx, embed_in_onnx
from tledge.errors import ExportOptionError, TledgeError, require

MIN_CALIBRATION_IMAGES = 32
DEFAULT_CALIBRATION_IMAGES = 512
CALIB_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_PERCENTILE = 99.999
CALIB_BATCH = 16


@dataclass(frozen=True)
class Int8Flavour:
    name: str
    activation_symmetric: bool
    unsigned_activations: bool
    role: str  # "cpu" or "tensorrt"
    reduce_range: bool  # 7-bit weights (|w| <= 64): see the note below


# ONNX Runtime's u8s8 kernels on x86 CPUs without VNNI (AVX2 only) add the products of adjacent u8×s8 pairs
# into int16 (VPMADDUBSW), which saturates above 32767; with VNNI they accumulate in int32. Full-range int8
# weights (|w| <= 127) can reach 2·255·127 = 64770 and lost 4 points on an AVX2-only machine; 7-bit weights
# (|w| <= 64, ONNX Runtime's reduce_range) reach at most 2·255·64 = 32640, so the same file computes the same
# numbers on every x86 kind (measured: FIELD-NOTES 2026-12-02, docs/results.md "INT8 on both x86 kinds").
# The TensorRT flavour keeps full-range weights: TensorRT's INT8 kernels accumulate in int32.
FLAVOURS = {
    "u8s8": Int8Flavour("u8s8", activation_symmetric=False, unsigned_activations=True, role="cpu",
                        reduce_range=True),
    "s8s8": Int8Flavour("s8s8", activation_symmetric=True, unsigned_activations=False, role="tensorrt",
                        reduce_range=False),
}


# ----------------------------------------------------------------------------------------- images
def select_calibration_images(paths: Sequence[Path], count: int | None = DEFAULT_CALIBRATION_IMAGES,
                              source: str = "", seed: int = 0) -> list[Path]:
    """A seeded sample of `count` paths (all of them when there are fewer); refuse fewer than 32."""
    paths = list(paths)
    if count is not None and count < MIN_CALIBRATION_IMAGES:
        raise ExportOptionError(f"--calib-images must be at least {MIN_CALIBRATION_IMAGES}, got {count}")
    if len(paths) < MIN_CALIBRATION_IMAGES:
        raise TledgeError(
            f"INT8 calibration needs at least {MIN_CALIBRATION_IMAGES} real images, {source or 'the source'} has "
            f"{len(paths)}; point --calib-data at a folder of representative photos"
        )
    if count is None or len(paths) <= count:
        return paths
    picked = random.Random(seed).sample(range(len(paths)), count)
    return [paths[i] for i in sorted(picked)]


class ImageCalibrationReader:
    """An ONNX Runtime CalibrationDataReader that streams preprocessed batches of real images.

    Implements `get_next`, `rewind`, `__len__` (number of batches) and `set_range(start, end)` (in batches),
    so ONNX Runtime's chunked calibration loop can feed the calibrator a few batches at a time.
    """

    def __init__(self, paths: Sequence[Path], card: ModelCard, input_name: str = "input",
                 batch_size: int = CALIB_BATCH, fixed_batch: int | None = None):
        self.paths = list(paths)
        self.card = card
        self.input_name = input_name
        self.batch_size = fixed_batch or batch_size
        self.fixed_batch = fixed_batch
        self.batches = [self.paths[i:i + self.batch_size] for i in range(0, len(self.paths), self.batch_size)]
        if fixed_batch:  # a fixed-batch graph takes exactly N images per call: drop the short tail
            self.batches = [b for b in self.batches if len(b) == fixed_batch]
        self.unreadable: set[Path] = set()
        self.images_seen: set[Path] = set()
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._queue = list(range(start_index, min(end_index, len(self.batches))))

    def rewind(self) -> None:
        self.set_range(0, len(self.batches))

    def get_next(self) -> dict | None:
        while self._queue:
            paths = self.batches[self._queue.pop(0)]
            batch, kept = preprocess.load_batch(paths, self.card)
            self.images_seen.update(paths[i] for i in kept)
            self.unreadable.update(set(paths) - {paths[i] for i in kept})
            if self.fixed_batch and len(kept) != self.fixed_batch:
                continue
            if kept:
                return {self.input_name: batch}
        return None


# ----------------------------------------------------------------------------------------- quantize
def quantize_int8(fp32_onnx: str | Path, out_path: str | Path, images: Sequence[Path], flavour: str = "u8s8",
                  method: str = "minmax", percentile: float | None = None,
                  nodes_to_exclude: Sequence[str] | None = None, calibration_source: str = "",
                  calibration_cache: str | Path | None = None, reduce_range: bool | None = None) -> Path:
    """Quantize `fp32_onnx` (a tledge ONNX export) to QDQ INT8 at `out_path`; returns the path.

    images: real calibration images (see select_calibration_images). calibration_cache: a JSON file of
    calibrated tensor ranges; written if absent, reused if present (so a second flavour skips calibration).
    """
    onnx = require("onnx", "export", "INT8 quantization")
    quant = require("onnxruntime.quantization", "cpu", "INT8 quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if flavour not in FLAVOURS:
        raise ExportOptionError(f"unknown INT8 flavour {flavour!r}; choose from {', '.join(FLAVOURS)}")
    if method not in CALIB_METHODS:
        raise ExportOptionError(f"unknown calibration method {method!r}; choose from {', '.join(CALIB_METHODS)}")
    if percentile is not None and method != "percentile":
        raise ExportOptionError("--calib-percentile applies to --calib-method percentile only")
    if percentile is not None and not 50.0 < percentile <= 100.0:
        raise ExportOptionError(f"--calib-percentile must be in (50, 100], got {percentile}")
    images = list(images)
    if len(images) < MIN_CALIBRATION_IMAGES:
        raise TledgeError(f"INT8 calibration needs at least {MIN_CALIBRATION_IMAGES} real images, got {len(images)}")
    spec = FLAVOURS[flavour]
    reduce_range = spec.reduce_range if reduce_range is None else bool(reduce_range)
    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    card = card_from_onnx(fp32_onnx)
    excluded = sorted(set(nodes_to_exclude or ()))
    fixed_batch = _fixed_batch(onnx.load(str(fp32_onnx), load_external_data=False))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tledge-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001 - symbolic shape inference can fail on exotic graphs; plain is fine
            quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        if excluded:  # names as they are after pre-processing (what quantize_static sees)
            _check_node_names(onnx.load(str(prepared)), excluded)
        reader = ImageCalibrationReader(images, card, card.input_name, fixed_batch=fixed_batch)
        if len(reader) == 0:
            raise TledgeError(f"INT8 calibration: no full batch of {fixed_batch} images; export with a dynamic batch")
        extra = {
            "ActivationSymmetric": spec.activation_symmetric,
            "WeightSymmetric": True,
            "CalibStridedMinMax": 1,  # one batch per collect_data call: bounded memory for every method
            # TensorRT's parser refuses INT32 bias DequantizeLinear nodes: its flavour keeps biases in float.
            "QuantizeBias": spec.role != "tensorrt",
        }
        if method == "percentile":
            extra["CalibPercentile"] = float(percentile if percentile is not None else DEFAULT_PERCENTILE)
        cache = Path(calibration_cache) if calibration_cache else Path(tmp) / "calibration.json"
        quantized = Path(tmp) / "quantized.onnx"
        try:
            with _quiet():  # ORT prints histogram progress to stdout and warns through logging
                quant.quantize_static(
                    str(prepared), str(quantized), reader,
                    quant_format=quant.QuantFormat.QDQ,
                    per_channel=True,
                    reduce_range=reduce_range,
                    activation_type=quant.QuantType.QUInt8 if spec.unsigned_activations else quant.QuantType.QInt8,
                    weight_type=quant.QuantType.QInt8,
                    nodes_to_exclude=excluded or None,
                    calibrate_method=_ort_method(quant, method),
                    extra_options=extra,
                    calibration_cache_path=str(cache),
                )
        except TledgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT quantization errors → one line
            first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
            raise TledgeError(f"INT8 quantization ({flavour}, {method}) failed: {first}") from None
        model = onnx.load(str(quantized))

    calibrated = len(reader.images_seen) if reader.images_seen else len(images)
    if reader.images_seen and calibrated < MIN_CALIBRATION_IMAGES:
        raise TledgeError(f"only {calibrated} calibration images were readable ({len(reader.unreadable)} were not); "
                          f"INT8 needs at least {MIN_CALIBRATION_IMAGES}")
    facts = {
        "flavour": spec.name,
        "role": spec.role,
        "activation_symmetric": spec.activation_symmetric,
        "activation_type": "uint8" if spec.unsigned_activations else "int8",
        "weight_type": "int8",
        "per_channel": True,
        "reduce_range": reduce_range,
        "format": "QDQ",
        "method": method,
        "percentile": extra.get("CalibPercentile"),
        "calibration_images": calibrated,
        "calibration_unreadable": len(reader.unreadable),
        "calibration_source": calibration_source,
        "nodes_excluded": excluded,
        "quantize_seconds": round(time.perf_counter() - started, 3),
    }
    card = card.replace(precision="int8", extra={**card.extra, "int8": facts})
    embed_in_onnx(model, card)
    from tledge.exporting.qdq_check import check_qdq

    problems = check_qdq(model, "tensorrt" if spec.role == "tensorrt" else "onnxruntime")
    if spec.role == "cpu" and reduce_range:  # the file must compute the same on every x86 kind
        from tledge.exporting.int16_headroom import saturation_problem

        problems += [p for p in [saturation_problem(model)] if p]
    if problems:  # a graph its consumer would refuse is a bug here, not a file to hand over
        raise TledgeError(f"INT8 ({flavour}) graph fails the Q/DQ check: {'; '.join(problems[:3])}")
    atomic_write_with(out_path, lambda tmp_path: onnx.save(model, str(tmp_path)))
    return out_path


def record_latency(path: str | Path, latency_ms: dict) -> None:
    """Add measured latencies (e.g. {"batch1_ms": 3.2, "cpu": "...", "compared": {...}}) to card.extra["int8"]."""
    onnx = require("onnx", "export", "INT8 quantization")
    path = Path(path)
    model = onnx.load(str(path))
    card = card_from_onnx(path)
    facts = {**card.extra.get("int8", {}), **latency_ms}
    embed_in_onnx(model, card.replace(extra={**card.extra, "int8": facts}))
    atomic_write_with(path, lambda tmp_path: onnx.save(model, str(tmp_path)))


# ----------------------------------------------------------------------------------------- helpers
class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer prints histogram progress to stdout and logs through the root logger itself
    (`logging.info(…)`, which also installs a root handler when there is none). For the call, records logged
    on the root logger itself below ERROR and the `onnxruntime` loggers' are dropped; tledge's own records
    (which only pass through the root) and the caller's logging config (root level, handlers) are untouched."""
    root, ort = logging.getLogger(), logging.getLogger("onnxruntime")
    handlers, ort_level, drop = list(root.handlers), ort.level, _BelowError()
    root.addFilter(drop)  # a logger's filters see only the records logged on it, not propagated ones
    ort.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(drop)
        ort.setLevel(ort_level)
        for handler in [h for h in root.handlers if h not in handlers]:  # logging.basicConfig run by ORT
            root.removeHandler(handler)


def _ort_method(quant, method: str):
    return {"minmax": quant.CalibrationMethod.MinMax, "entropy": quant.CalibrationMethod.Entropy,
            "percentile": quant.CalibrationMethod.Percentile}[method]


def _fixed_batch(model) -> int | None:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _check_node_names(model, names: Sequence[str]) -> None:
    known = {node.name for node in model.graph.node}
    missing = [n for n in names if n not in known]
    if missing:
        raise ExportOptionError(f"nodes to keep in float not found in the graph: {', '.join(missing[:5])}")


def quantize_step(flavour: str):
    """The int8 (u8s8, the CPU flavour) and int8-trt (s8s8, TensorRT's input) steps: quantize what the
    calibration step chose, the way it chose, and record how in the card."""

    def build(ctx, inputs, target: Path) -> Path:
        calibrated = inputs["int8-calibration"]
        path = quantize_int8(calibrated.source, target, flavour=flavour, images=calibrated.images,
                             method=calibrated.method, percentile=calibrated.percentile,
                             nodes_to_exclude=calibrated.nodes, calibration_source=calibrated.images_source,
                             calibration_cache=calibrated.cache)
        facts = calibrated.card_facts()
        if facts:
            record_latency(path, facts)
        return path

    return build
