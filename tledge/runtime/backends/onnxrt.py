"""ONNX Runtime backend. Needs only numpy and onnxruntime (no torch, no onnx package), so it runs on a bare
Jetson image.

Providers: TensorRT > CUDA > CPU as installed; `provider="tensorrt"` means TensorRT, then CUDA, then CPU;
`provider="cuda"` CUDA then CPU. GPU providers get options, not defaults:
- TensorRT EP: an engine and timing cache (next to the model in `<model>.trt-cache/`, or `cache_dir`), so
  only the first start builds (minutes on a Jetson); FP16 when asked (`fp16=True`); INT8 for a TensorRT
  Q/DQ file; the device index; an explicit batch profile (`trt_profile_{min,opt,max}_shapes`: batch 1 to
  max(`batch`, 32), optimised for `batch`), so a new batch size such as a partial last batch runs on the
  same engine instead of rebuilding it inside predict or bench.
- CUDA EP: the device index; TF32 off when `strict_fp32=True` (FP32 parity must compare FP32 arithmetic).
`strict_fp32=True` never uses the TensorRT EP (it may pick FP16/TF32 kernels).

The CPU INT8 flavour (model.int8.onnx: U8 activations, non-zero zero points) stays on the CPU provider:
TensorRT's parser refuses it and the graph would be split between providers. The TensorRT flavour is
model.int8.trt.onnx.

`name` says which provider actually runs the graph (ONNX Runtime falls back to the next one silently when a
provider's libraries fail to load); a fallback is recorded in `notes` for the caller to print.

Pip-installed NVIDIA libraries are not on the loader's path: before a GPU session, `preload_gpu_libraries`
imports `tensorrt` (its wheel loads libnvinfer.so.10 / libnvonnxparser.so.10, which the TensorRT provider's
library needs, and the loader then finds them by soname) and calls `onnxruntime.preload_dlls()` (1.21+: CUDA
and cuDNN from the nvidia-* wheels).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from tledge.card import ModelCard, card_from_onnx_session
from tledge.errors import TledgeError, require
from tledge.runtime.backends.base import Backend, cap_threads

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
SHORT = {v: k for k, v in PROVIDER_ALIASES.items()}
CACHE_SUFFIX = ".trt-cache"
TRT_PROFILE_MAX_BATCH = 32  # the TensorRT EP's profile covers batch 1..max(batch, this)


def choose_providers(available: list[str], device: str = "auto", provider: str | None = None,
                     strict_fp32: bool = False, cpu_only: bool = False) -> list[str]:
    """Ordered provider names for a session.

    `device="cpu"` (or `cpu_only`) keeps it on the CPU; `provider` names the first choice and the ones below
    it follow as fallbacks; `strict_fp32` leaves the TensorRT EP out."""
    if provider:
        wanted = PROVIDER_ALIASES.get(provider.lower(), provider)
        if wanted not in PREFERENCE:
            raise TledgeError(f"unknown provider {provider!r}; choose from tensorrt, cuda, cpu")
        if wanted not in available:
            raise TledgeError(f"ONNX Runtime provider {provider!r} is not available here (have: {', '.join(available)})"
                              f"; {install_hint()}")
        if cpu_only and wanted != "CPUExecutionProvider":
            raise TledgeError(f"this file is the CPU INT8 flavour (U8 activations with zero points), which the "
                              f"{SHORT.get(wanted, wanted)} provider cannot run whole; use model.int8.trt.onnx there, "
                              "or run this one with --provider cpu")
        chain = PREFERENCE[PREFERENCE.index(wanted):]
    elif device == "cpu" or cpu_only:
        return ["CPUExecutionProvider"]
    else:
        chain = PREFERENCE
        if device.startswith("cuda") and not any(p in available for p in PREFERENCE[:2]):
            raise TledgeError(f"device cuda asked for, but this onnxruntime has no CUDA provider; {install_hint()}")
    if strict_fp32:
        chain = tuple(p for p in chain if p != "TensorrtExecutionProvider")
    ordered = [p for p in chain if p in available or p == "CPUExecutionProvider"]
    return ordered or ["CPUExecutionProvider"]


def profile_shapes(input_name: str, input_size, batch: int | None = None, nhwc: bool = False) -> dict:
    """The TensorRT EP's explicit profile for a dynamic-batch NCHW input: "name:1x3xHxW" style strings
    ("name:1xHxWx3" for a uint8 NHWC model, `nhwc=True`)."""
    height, width = input_size
    opt = max(1, int(batch or 1))
    top = max(opt, TRT_PROFILE_MAX_BATCH)
    image = f"{height}x{width}x3" if nhwc else f"3x{height}x{width}"
    return {f"trt_profile_{which}_shapes": f"{input_name}:{n}x{image}"
            for which, n in (("min", 1), ("opt", opt), ("max", top))}


def provider_options(providers: list[str], model_path: Path, device_id: int = 0, cache_dir: str | Path | None = None,
                     fp16: bool = False, int8: bool = False, strict_fp32: bool = False,
                     profile: dict | None = None) -> list[dict]:
    """Options for each provider, in the same order (ONNX Runtime takes string values). `profile`: the
    TensorRT EP's trt_profile_*_shapes (profile_shapes)."""
    options = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            cache = Path(cache_dir) if cache_dir else model_path.with_name(model_path.name + CACHE_SUFFIX)
            options.append({
                "device_id": str(device_id),
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(cache),
                "trt_fp16_enable": "True" if fp16 else "False",
                "trt_int8_enable": "True" if int8 else "False",  # explicit Q/DQ: scales come from the graph
                **(profile or {}),
            })
        elif name == "CUDAExecutionProvider":
            options.append({"device_id": str(device_id), **({"use_tf32": "0"} if strict_fp32 else {})})
        else:
            options.append({})
    return options


def preload_gpu_libraries(ort, providers: list[str]) -> list[str]:
    """Load the pip-installed NVIDIA libraries the GPU providers link, before the session is created; returns
    what could not be loaded (said only if the provider then does not load)."""
    problems = []
    if "TensorrtExecutionProvider" in providers:
        try:
            import tensorrt  # noqa: F401 - its wheel loads libnvinfer.so.10 for the TensorRT provider
        except Exception as exc:  # noqa: BLE001 - absent, or present without its libraries
            problems.append(f"import tensorrt failed ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})")
    preload = getattr(ort, "preload_dlls", None)
    if callable(preload) and any(p in providers for p in PREFERENCE[:2]):
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):  # it prints each library it cannot find
                preload()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"onnxruntime.preload_dlls() failed ({str(exc).splitlines()[0][:120]})")
        failed = [line.strip() for line in said.getvalue().splitlines() if line.startswith("Failed to load")]
        problems += [f"onnxruntime.preload_dlls(): {line[:160]}" for line in failed[:2]]
    return problems


def install_hint() -> str:
    """Which ONNX Runtime is installed, and the one-line fix when it is the wrong one for a GPU."""
    from tledge.runtime.backends.ort_install import diagnose

    return diagnose().fix or "GPU providers need onnxruntime-gpu: see docs/reference.md 'GPU install'"


def fallback_hint() -> str:
    """Why a listed GPU provider did not load. With onnxruntime-gpu installed and no clash, the package is
    right and the libraries its providers link are what is missing (measured with onnxruntime-gpu 1.31.1
    and no CUDA libraries: it lists both GPU providers, then runs on the CPU)."""
    from tledge.runtime.backends.ort_install import diagnose

    report = diagnose()
    version = report.installed.get("onnxruntime-gpu")
    if version and not report.problem:
        return (f"onnxruntime-gpu {version} is installed, but the CUDA/TensorRT libraries its providers link did "
                "not load: install the tledge GPU extra that matches this torch's CUDA major "
                "(docs/reference.md 'GPU install')")
    return install_hint()


def device_index(device: str) -> int:
    if device.startswith("cuda:"):
        try:
            return int(device.split(":", 1)[1])
        except ValueError:
            raise TledgeError(f"device {device!r}: expected cuda:N") from None
    return 0


class OnnxRuntimeBackend(Backend):
    @classmethod
    def read_card(cls, path) -> ModelCard:
        """The card in the ONNX metadata, read through ONNX Runtime (no torch, no onnx package)."""
        ort = require("onnxruntime", "cpu", "reading an .onnx model card")
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise TledgeError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        return card_from_onnx_session(session, path)

    @classmethod
    def format_label(cls, path) -> str:
        name = Path(path).name.lower()
        return "onnx-int8" if ".int8" in name else ("onnx-fp16" if ".fp16" in name else "onnx")

    def __init__(self, path: str | Path, device: str = "auto", provider: str | None = None, threads: int | None = None,
                 spin: bool | None = None, cache_dir: str | Path | None = None, fp16: bool = False,
                 strict_fp32: bool = False, batch: int | None = None):
        """`spin=False` stops idle intra-op threads from busy-waiting between calls, which leaves the cores to
        decode threads in a pipeline; None keeps ONNX Runtime's default (spinning). `batch`: the largest batch
        the caller will run (the TensorRT EP's profile is optimised for it)."""
        ort = require("onnxruntime", "cpu", "running an .onnx model")
        self.path = Path(path)
        self.notes: list[str] = []
        threads, note = cap_threads(threads)
        if note:
            self.notes.append(note)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        if spin is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        available = list(ort.get_available_providers())
        providers = choose_providers(available, device, provider, strict_fp32)
        card, profile = None, None
        if providers[0] != "CPUExecutionProvider":  # read the card first: the CPU INT8 flavour stays on the CPU
            card, graph_input = self._card_only(ort)
            if not isinstance(graph_input.shape[0], int):  # dynamic batch: one profile for every batch size used
                profile = profile_shapes(graph_input.name, card.input_size, batch, nhwc=card.input_format == "uint8")
            if int8_role(card) == "cpu":
                providers = choose_providers(available, device, provider, strict_fp32, cpu_only=True)
                self.notes.append(f"{self.path.name} is the CPU INT8 flavour: kept on the CPU provider "
                                  "(model.int8.trt.onnx is the TensorRT one)")
        int8 = card is not None and int8_role(card) == "tensorrt"
        settings = provider_options(providers, self.path, device_index(device), cache_dir, fp16, int8, strict_fp32,
                                    profile)
        for name, opts in zip(providers, settings):
            if name == "TensorrtExecutionProvider":
                try:
                    Path(opts["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise TledgeError(f"cannot create the TensorRT engine cache {opts['trt_engine_cache_path']} "
                                      f"({exc.strerror}); pass --cache DIR") from None
        preload_problems = preload_gpu_libraries(ort, providers)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=list(zip(providers, settings)))
        except Exception as exc:  # noqa: BLE001 - protobuf parse errors, invalid graphs
            raise TledgeError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.card: ModelCard = card_from_onnx_session(self.session, self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._check_graph_matches_card()
        active = self.session.get_providers()[0]
        self.provider = SHORT.get(active, active)
        if active != providers[0]:
            why = f"; {'; '.join(preload_problems)}" if preload_problems else ""
            self.notes.append(f"warning: {SHORT.get(providers[0], providers[0])} provider did not load, running on "
                              f"{self.provider} ({fallback_hint()}{why})")
        precision = "int8" if ".int8" in self.path.name or self.card.precision.startswith("int8") else self.card.precision
        if active == "TensorrtExecutionProvider" and fp16 and precision == "fp32":
            precision = "fp16"
        if active == "CUDAExecutionProvider" and strict_fp32:
            precision += "-notf32"
        self.name = f"onnxruntime-{self.provider}-{precision}"

    def _card_only(self, ort) -> ModelCard:
        light = ort.SessionOptions()
        light.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(self.path), sess_options=light, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise TledgeError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        return card_from_onnx_session(session, self.path), session.get_inputs()[0]

    def _check_graph_matches_card(self) -> None:
        shape = self.session.get_inputs()[0].shape
        height, width = self.card.input_size
        want = (height, width, 3) if self.card.input_format == "uint8" else (3, height, width)
        fixed = [d for d in shape[1:] if isinstance(d, int)]
        if len(shape) != 4 or (len(fixed) == 3 and tuple(fixed) != want):
            raise TledgeError(
                f"{self.path}: graph input {shape} disagrees with its model card [N, {', '.join(map(str, want))}]; "
                "re-export it"
            )
        self.max_batch = shape[0] if isinstance(shape[0], int) else None
        out = self.session.get_outputs()[0].shape
        width = out[-1] if len(out) == 2 else None
        if len(out) != 2 or (isinstance(width, int) and width != self.card.num_classes):
            raise TledgeError(f"{self.path}: the graph gives {out[1:] if len(out) != 2 else width} outputs per image "
                              f"but its model card names {self.card.num_classes} classes; re-export it")

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        self.session = None


def int8_role(card: ModelCard) -> str | None:
    """"cpu" or "tensorrt" for a tledge INT8 ONNX (from its card), None otherwise."""
    facts = card.extra.get("int8") if isinstance(card.extra, dict) else None
    return facts.get("role") if isinstance(facts, dict) else None
