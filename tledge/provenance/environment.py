"""The environment that decides an artifact's numerics, recorded with every parity verdict.

A verdict belongs to (artifact, runtime, device), not to the file: the same INT8 ONNX gives other numbers on
an x86 CPU without VNNI (ONNX Runtime's int16 intermediate) than on one with it, and a TensorRT engine is
built for one GPU and one TensorRT version. `describe(backend_name)` lists what decides the numbers
(runtime and version, provider, CPU integer-kernel family, GPU, compute capability, driver, TensorRT) plus
facts for people (CPU model, OS); `numerics_key` keeps only the deciding part, so two machines that compute
the same way compare equal. No torch: this runs on a bare Jetson image.

The CPU kernel family comes from CPUID as numpy reads it at start-up (so an emulated CPU, e.g. `qemu-x86_64
-cpu Haswell`, reports what it emulates); `TLEDGE_CPU_KERNELS` overrides it where detection is wrong.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

CPU_KERNELS_ENV = "TLEDGE_CPU_KERNELS"
# What decides numerics, by where the artifact runs. The ORT CPU provider's integer kernels differ by ISA
# family; GPU runtimes by GPU (architecture), and for TensorRT by its version (an engine is built per version).
CPU_KEYS = ("runtime", "runtime_minor", "provider", "cpu_kernels")
GPU_KEYS = ("runtime", "runtime_minor", "provider", "gpu", "compute_capability", "tensorrt")


def cpu_kernels() -> str:
    """The integer-kernel family of this CPU: avx512-vnni, avx-vnni, avx512, avx2, sse, arm-i8mm,
    arm-dotprod, arm-neon or the machine name when none of those is known."""
    override = os.environ.get(CPU_KERNELS_ENV, "").strip()
    return override or _detected_kernels()


@lru_cache(maxsize=1)
def _detected_kernels() -> str:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = {}
    has = {name for name, present in features.items() if present}
    if "AVX512VNNI" in has or "AVX512_CLX" in has:
        return "avx512-vnni"
    if "AVXVNNI" in has or "AVX_VNNI" in has:
        return "avx-vnni"
    if "AVX512F" in has:
        return "avx512"
    if "AVX2" in has:
        return "avx2"
    if "I8MM" in has:
        return "arm-i8mm"
    if "ASIMDDP" in has:
        return "arm-dotprod"
    if "ASIMD" in has or "NEON" in has:
        return "arm-neon"
    if "SSE2" in has:
        return "sse"
    return platform.machine() or "unknown"


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_of(backend_name: str) -> str:
    """Backend name (onnxruntime-cpu-int8, tensorrt-fp16, torch-cpu, ...) → runtime package."""
    return backend_name.split("-", 1)[0] if backend_name else "unknown"


def provider_of(backend_name: str) -> str:
    """onnxruntime-cuda-int8 → cuda; tensorrt-fp16 → tensorrt; torch-cpu → cpu."""
    parts = backend_name.split("-")
    if parts[0] == "tensorrt":
        return "tensorrt"
    return parts[1] if len(parts) > 1 else "cpu"


def describe(backend_name: str) -> dict:
    """The environment a backend named `backend_name` runs in (see module doc)."""
    runtime = runtime_of(backend_name)
    provider = provider_of(backend_name)
    version = _runtime_version(runtime)
    env = {
        "runtime": runtime,
        "runtime_version": version,
        "runtime_minor": ".".join(version.split(".")[:2]),
        "provider": provider,
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_kernels": cpu_kernels(),
        "os": platform.platform(terse=True),
    }
    if provider != "cpu":
        env.update(_gpu_facts())
    return env


def numerics_key(env: dict) -> tuple:
    """The part of an environment that decides an artifact's numbers (CPU: ISA family; GPU: the GPU)."""
    keys = CPU_KEYS if env.get("provider", "cpu") == "cpu" else GPU_KEYS
    return tuple((k, str(env.get(k, ""))) for k in keys)


def differences(current: dict, verified: dict) -> list[str]:
    """What differs between two environments, in words (empty when they compute the same way)."""
    keys = CPU_KEYS if current.get("provider", "cpu") == "cpu" else GPU_KEYS
    return [f"{k} {verified.get(k) or '?'} → {current.get(k) or '?'}" for k in keys
            if str(current.get(k, "")) != str(verified.get(k, ""))]


def short(env: dict) -> str:
    """One line: 'onnxruntime 1.32.0 cpu, avx512-vnni (AMD EPYC)' or '... tensorrt, Orin (8.7), TensorRT 10.3'."""
    base = f"{env.get('runtime', '?')} {env.get('runtime_version', '')} {env.get('provider', '?')}".replace("  ", " ")
    if env.get("provider", "cpu") == "cpu":
        return f"{base}, {env.get('cpu_kernels', '?')} ({env.get('cpu', '?')})"
    gpu = f"{env.get('gpu') or '?'} (sm {env.get('compute_capability') or '?'})"
    trt = f", TensorRT {env['tensorrt']}" if env.get("tensorrt") else ""
    return f"{base}, {gpu}{trt}, driver {env.get('driver') or '?'}"


def _runtime_version(runtime: str) -> str:
    import importlib.metadata as metadata

    names = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "tensorrt": ("tensorrt", "tensorrt-cu12",
             "tensorrt-cu13"), "torch": ("torch",), "openvino": ("openvino",)}.get(runtime, (runtime,))
    try:
        module = __import__(runtime)
        if getattr(module, "__version__", None):
            return str(module.__version__)
    except Exception:  # noqa: BLE001 - a runtime that cannot import still has a version on disk
        pass
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def _gpu_facts() -> dict:
    """GPU name, compute capability, driver and TensorRT version, from whichever library is here."""
    facts = {"gpu": "", "compute_capability": "", "driver": "", "tensorrt": ""}
    try:
        import tensorrt  # noqa: F401 - only its version

        facts["tensorrt"] = str(tensorrt.__version__)
    except Exception:  # noqa: BLE001
        pass
    try:
        from tledge.cuda_runtime import detect_gpu, import_cudart

        found = detect_gpu()
        if found:
            facts["gpu"], facts["compute_capability"] = found
        cudart = import_cudart()
        if cudart is not None:
            err, version = cudart.cudaDriverGetVersion()
            if int(err) == 0 and int(version):  # 12060 → 12.6
                facts["driver"] = f"CUDA {int(version) // 1000}.{int(version) % 1000 // 10}"
    except Exception:  # noqa: BLE001 - no CUDA library here: the facts stay empty, the verdict says '?'
        pass
    return facts
