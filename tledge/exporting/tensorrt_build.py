"""ONNX → TensorRT engine with the TensorRT Python API, in small composable steps (Polygraphy-style):

    network_from_onnx → builder_config (+ profile, workspace, timing cache, progress) → build_serialized
    → write_engine (engine + sidecar JSON) — `build_engine` runs them in order.

API eras, detected from `trt.__version__` and from what the module has:
- weakly typed (TensorRT 8.5 – 10.11, JetPack 5/6): precisions come from builder flags, FP16 with
  `BuilderFlag.FP16`; INT8 with `BuilderFlag.INT8` (+ FP16 for the layers left in float) on the QDQ ONNX,
  i.e. explicit quantization: the Q/DQ scales are in the graph, no calibrator. TensorRT 8.x also needs the
  EXPLICIT_BATCH network flag (10.x ignores it).
- strongly typed (10.12+ and 11): `NetworkDefinitionCreationFlag.STRONGLY_TYPED`, no precision flags; the
  graph's types decide. FP16 comes from an FP16 ONNX (tledge.exporting.fp16 converts, keeping float32 I/O);
  INT8 from the symmetric QDQ ONNX with its float region converted to FP16 (opset 19, float16 scales, none
  below float16's smallest normal).
Every INT8 source passes tledge.exporting.qdq_check's TensorRT rules before the build starts.
The implicit-quantization calibrator (IInt8Calibrator) is deprecated since 10.1 and gone in 11: not used.

Names used on the tensorrt module per era are listed in API_NAMES_* below; tests check each against the
identifier lists of the compiled bindings of TensorRT 8.6.1, 10.3 and 11.4, and check against a
call-recording stand-in (tests/fake_tensorrt.py) that the code uses no name outside its era's list. That
stand-in is not TensorRT: this module has not been run against a real TensorRT here (no GPU, and TensorRT
cannot be installed on the development machines); `scripts/gpu_check.sh` on a GPU machine is the real test.
"""

from __future__ import annotations

import logging
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tledge.atomic import atomic_write_bytes
from tledge.card import ModelCard, card_from_onnx, engine_sidecar_path
from tledge.errors import ExportOptionError, MissingDependency, TledgeError
from tledge.cuda_runtime import detect_gpu  # the one GPU probe (builder and backend)

log = logging.getLogger(__name__)

WEAK, STRONG = "weak", "strong"
STRONG_TYPING_FROM = (10, 12)
PRECISIONS = ("fp16", "int8")
TIMING_CACHE_NAME = "tensorrt.timing.cache"
DEFAULT_MAX_BATCH = 16
QDQ_FP16_OPSET = 19  # first opset whose QuantizeLinear/DequantizeLinear take float16 scales

# Attribute and method names this module uses, per API era (checked by tests/test_export_tensorrt.py).
API_NAMES_COMMON = (
    "Logger", "WARNING", "INFO", "Builder", "create_network", "NetworkDefinitionCreationFlag",
    "OnnxParser", "parse_from_file", "num_errors", "get_error",
    "create_builder_config", "set_memory_pool_limit", "MemoryPoolType", "WORKSPACE",
    "create_optimization_profile", "set_shape", "add_optimization_profile", "num_inputs", "get_input",
    "create_timing_cache", "set_timing_cache", "get_timing_cache", "serialize", "build_serialized_network",
)
API_NAMES_WEAK = API_NAMES_COMMON + ("BuilderFlag", "set_flag", "FP16", "INT8")
API_NAMES_EXPLICIT_BATCH = ("EXPLICIT_BATCH",)  # TensorRT 8.x only
API_NAMES_STRONG = API_NAMES_COMMON + ("STRONGLY_TYPED",)
API_NAMES_PROGRESS = ("IProgressMonitor", "progress_monitor", "phase_start", "step_complete", "phase_finish")  # 10.0+
# Names only probed with hasattr() to detect the era or a feature (they may be absent in an era).
API_NAMES_PROBED = ("BuilderFlag", "FP16", "STRONGLY_TYPED", "IProgressMonitor", "progress_monitor")
# Python-level names not in the compiled bindings' strings: `__version__` is set by tensorrt/__init__.py;
# `name`/`shape` are properties of ITensor.
API_NAMES_UNLISTED = ("__version__", "name", "shape")


@dataclass(frozen=True)
class Profile:
    min: int
    opt: int
    max: int

    def shapes(self, height: int, width: int):
        return tuple((n, 3, height, width) for n in (self.min, self.opt, self.max))

    def to_dict(self) -> dict:
        return {"min": self.min, "opt": self.opt, "max": self.max}


def make_profile(batch: int | None = None, max_batch: int | None = None) -> Profile:
    opt = batch or 1
    top = max_batch if max_batch is not None else max(opt, DEFAULT_MAX_BATCH)
    if opt < 1 or top < opt:
        raise ExportOptionError(f"need 1 ≤ --batch ≤ --max-batch, got --batch {opt} --max-batch {top}")
    return Profile(1, opt, top)


# ----------------------------------------------------------------------------------------- environment
def import_tensorrt():
    """The tensorrt module, or a one-line error saying what is needed."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependency(
            f"TensorRT engines need an NVIDIA GPU and the 'tensorrt' package ({exc}); on Jetson it comes with "
            "JetPack, on x86: pip install 'tledge[gpu]'") from None
    except Exception as exc:  # noqa: BLE001 - bindings present but libnvinfer missing, etc.
        raise MissingDependency(f"the 'tensorrt' package is installed but cannot load ({str(exc).splitlines()[0][:160]}); "
                                "TensorRT engines need an NVIDIA GPU with TensorRT's libraries") from None
    return trt


def tensorrt_unavailable_reason() -> str | None:
    """Why TensorRT engines cannot be built here (None: they can). Cheap: for the default format list."""
    import importlib.util

    try:
        found = importlib.util.find_spec("tensorrt") is not None
    except ValueError:  # already imported without a spec (a stand-in in tests)
        found = True
    if not found:
        return "the tensorrt package is not installed"
    try:
        return None if detect_gpu() is not None else "no CUDA GPU found"
    except TledgeError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001
        return f"CUDA could not be queried ({str(exc).splitlines()[0][:160]})"


def tensorrt_available() -> bool:
    """tensorrt importable and a CUDA GPU present."""
    return tensorrt_unavailable_reason() is None


def require_gpu() -> tuple[str, str]:
    gpu = detect_gpu()
    if gpu is None:
        raise TledgeError("TensorRT engines need an NVIDIA GPU with CUDA, and none was found here; "
                          "export onnx/int8 on this machine and build engines on the target device")
    return gpu


def version_tuple(trt) -> tuple[int, ...]:
    parts = []
    for piece in str(getattr(trt, "__version__", "0")).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def detect_era(trt) -> str:
    """"strong" for TensorRT 10.12+ (or any build without weak-typing flags), else "weak"."""
    flags = getattr(trt, "BuilderFlag", None)
    has_strong = hasattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED")
    if not hasattr(flags, "FP16"):  # TensorRT 11 removed the precision flags
        if not has_strong:
            raise TledgeError(f"TensorRT {getattr(trt, '__version__', '?')} has neither precision flags nor strong "
                              "typing; tledge supports TensorRT 8.5 to 11")
        return STRONG
    if version_tuple(trt)[:2] >= STRONG_TYPING_FROM and has_strong:
        return STRONG
    if version_tuple(trt)[:2] < (8, 5):
        raise TledgeError(f"TensorRT {getattr(trt, '__version__', '?')} is too old; tledge needs 8.5 or newer")
    return WEAK


# ----------------------------------------------------------------------------------------- steps
def network_flags(trt, era: str) -> int:
    creation = trt.NetworkDefinitionCreationFlag
    if era == STRONG:
        return 1 << int(creation.STRONGLY_TYPED)
    if version_tuple(trt)[0] < 10:
        return 1 << int(creation.EXPLICIT_BATCH)
    return 0


def network_from_onnx(trt, builder, onnx_path: str | Path, era: str, logger):
    """Parse the ONNX file into a new network; parser errors become one TledgeError listing them."""
    network = builder.create_network(network_flags(trt, era))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        shown = "; ".join(e.strip().replace("\n", " ")[:200] for e in errors[:3]) or "no details"
        raise TledgeError(f"TensorRT's ONNX parser rejected {Path(onnx_path).name} ({len(errors)} error(s)): {shown}")
    return network, parser


def builder_config(trt, builder, network, era: str, precision: str, profile: Profile, input_size,
                   workspace_mib: int | None = None, timing_cache: bytes | None = None):
    """Config with precision flags (weak era), workspace limit, optimization profile, timing cache, progress.

    Returns (config, facts) where facts says what was set (for the sidecar).
    """
    if precision not in PRECISIONS:
        raise ExportOptionError(f"unknown TensorRT precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    config = builder.create_builder_config()
    facts: dict = {"flags": []}
    if workspace_mib is not None:
        if workspace_mib < 1:
            raise ExportOptionError(f"--workspace must be a positive number of MiB, got {workspace_mib}")
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if era == WEAK:
        config.set_flag(trt.BuilderFlag.FP16)
        facts["flags"].append("FP16")
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            facts["flags"].append("INT8")

    if network.num_inputs != 1:
        raise TledgeError(f"expected a network with one input, found {network.num_inputs}")
    tensor = network.get_input(0)
    if int(tuple(tensor.shape)[0]) != -1:
        raise TledgeError(f"{tensor.name} has a fixed batch {tuple(tensor.shape)[0]}; TensorRT engines are built "
                          "from a dynamic-batch ONNX (export without --batch, or with a TensorRT format in --formats)")
    optimization = builder.create_optimization_profile()
    optimization.set_shape(tensor.name, *profile.shapes(*input_size))
    config.add_optimization_profile(optimization)

    cache = config.create_timing_cache(timing_cache or b"")
    facts["timing_cache_reused"] = bool(timing_cache)
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")  # built by another TensorRT/GPU: start a fresh one
        config.set_timing_cache(cache, False)
        facts["timing_cache_reused"] = False

    if hasattr(trt, "IProgressMonitor") and hasattr(config, "progress_monitor"):
        config.progress_monitor = _progress_monitor(trt)
        facts["progress"] = "monitor"
    else:
        facts["progress"] = "logger"
    return config, facts


def build_serialized(builder, network, config) -> bytes:
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TledgeError("TensorRT could not build the engine (see the TensorRT log above); a larger --workspace "
                          "or a smaller --max-batch may help")
    data = bytes(serialized)
    if not data:
        raise TledgeError("TensorRT returned an empty engine")
    return data


def write_engine(engine_path: str | Path, data: bytes, card: ModelCard) -> Path:
    """The engine and its sidecar `<engine>.json` (the card with TensorRT facts), both atomically."""
    engine_path = Path(engine_path)
    atomic_write_bytes(engine_path, data)
    card.save(engine_sidecar_path(engine_path))
    return engine_path


def _progress_monitor(trt):
    class ProgressMonitor(trt.IProgressMonitor):
        """Logs top-level build phases (builds can take minutes on a Jetson)."""

        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._started[phase_name] = time.perf_counter()
            if parent_phase is None:
                log.info(f"  tensorrt: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self._started.pop(phase_name, None)

    return ProgressMonitor()


# ----------------------------------------------------------------------------------------- all together
def build_engine(onnx_path: str | Path, engine_path: str | Path, precision: str, profile: Profile,
                 workspace_mib: int | None = None, timing_cache_path: str | Path | None = None,
                 work_dir: str | Path | None = None) -> Path:
    """Build a TensorRT engine of `precision` from a tledge ONNX file and write engine + sidecar.

    precision "fp16": `onnx_path` is the FP32 ONNX (converted to FP16 first in the strongly typed era);
    "int8": `onnx_path` is the symmetric QDQ ONNX (model.int8.trt.onnx). `work_dir` receives that converted
    FP16 ONNX (default: the engine's folder; export passes its temporary folder).
    """
    trt = import_tensorrt()
    gpu_name, capability = require_gpu()
    era = detect_era(trt)
    engine_path = Path(engine_path)
    card = card_from_onnx(onnx_path)
    source = Path(onnx_path)
    if precision == "int8":
        from tledge.exporting.qdq_check import require_qdq_ok

        require_qdq_ok(source, "tensorrt")  # the parser's Q/DQ rules, checked before minutes of building
    if era == STRONG:
        source = strongly_typed_source(source, precision, Path(work_dir or engine_path.parent))
    cache_path = Path(timing_cache_path) if timing_cache_path else engine_path.parent / TIMING_CACHE_NAME
    cached = cache_path.read_bytes() if cache_path.is_file() else None

    logger = trt.Logger(trt.Logger.WARNING if hasattr(trt, "IProgressMonitor") else trt.Logger.INFO)
    builder = trt.Builder(logger)
    network, _parser = network_from_onnx(trt, builder, source, era, logger)
    config, facts = builder_config(trt, builder, network, era, precision, profile, card.input_size, workspace_mib,
                                   cached)
    log.info(f"  tensorrt {getattr(trt, '__version__', '?')} ({era}ly typed): building {precision} engine from "
             f"{source.name}, batch {profile.min}/{profile.opt}/{profile.max} — this can take minutes")
    data = build_serialized(builder, network, config)
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))

    trt_facts = {
        "version": str(getattr(trt, "__version__", "unknown")),
        "gpu_name": gpu_name,
        "compute_capability": capability,
        "precision": precision,
        "profile": profile.to_dict(),
        "typed": era,
        "flags": facts["flags"],
        "workspace_mib": workspace_mib,
        "source_onnx": source.name,
        # The layers left in float: FP16 from the FP16 graph (strongly typed), or allowed by the FP16 builder
        # flag, which weakly typed builds set for INT8 too (TensorRT then picks fp16 or fp32 per layer).
        "float_region": "fp16" if era == STRONG or "FP16" in facts["flags"] else "fp32",
        "timing_cache": cache_path.name,
        "timing_cache_reused": facts["timing_cache_reused"],
    }
    card = card.replace(precision=precision, extra={**card.extra, "tensorrt": trt_facts})
    return write_engine(engine_path, data, card)


def strongly_typed_source(onnx_path: Path, precision: str, work_dir: Path) -> Path:
    """The ONNX a strongly typed build parses: types come from the graph, so FP16 needs an FP16 graph, and
    an INT8 QDQ graph needs its unquantized region (layers kept in float, by the budget search or by
    design) in FP16 too, or it runs in FP32 and the INT8 engine can be slower than the FP16 one. Opset 19
    lets the Q/DQ scales be float16, so DequantizeLinear outputs float16 into the float layers (scales below
    float16's smallest normal are raised to it, weights requantized: tledge.exporting.fp16.raise_tiny_scales)."""
    from tledge.exporting.fp16 import convert_to_fp16

    if precision == "fp16":
        return convert_to_fp16(onnx_path, work_dir / "model.fp16.onnx")
    converted = convert_to_fp16(onnx_path, work_dir / "model.int8.fp16.onnx", min_opset=QDQ_FP16_OPSET)
    from tledge.exporting.qdq_check import require_qdq_ok

    require_qdq_ok(converted, "tensorrt")
    return converted


def read_sidecar(engine_path: str | Path) -> dict:
    return json.loads(engine_sidecar_path(engine_path).read_text())


def engine_step(precision: str, source: str):
    """The trt-fp16 / trt-int8 steps: an engine of `precision` from step `source`'s ONNX. The FP16 ONNX a
    strongly typed build parses goes to the scratch folder: beside the engines, bench would take it for one
    more model."""

    def build(ctx, inputs, target: Path) -> Path:
        return build_engine(inputs[source], target, precision, ctx.profile, workspace_mib=ctx.options.workspace,
                            work_dir=ctx.tmp)

    return build
