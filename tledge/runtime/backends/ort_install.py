"""Which ONNX Runtime is installed and loaded, and the one-line fix when it is the wrong one.

`onnxruntime` (CPU) and `onnxruntime-gpu` install the same `onnxruntime` module: with both installed, the
one installed last wins, and a GPU machine can end up on the CPU build without a word. pip cannot express
"either/or", so tledge's extras never name both (`cpu` vs `gpu`), and this check says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Distributions that provide the `onnxruntime` module.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                     "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-training")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# onnxruntime-gpu 1.27+ are CUDA 13 builds, 1.19-1.26 CUDA 12: the extras pin the one that matches (pyproject.toml).
GPU_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'tledge[gpu]' (CUDA 12; 'tledge[gpu-cu13]' "
           "beside a CUDA 13 torch)")


@dataclass
class OrtInstall:
    installed: dict[str, str] = field(default_factory=dict)  # distribution → version
    loaded_version: str | None = None
    providers: list[str] = field(default_factory=list)
    problem: str | None = None
    fix: str | None = None

    @property
    def has_gpu_providers(self) -> bool:
        return any(p in self.providers for p in GPU_PROVIDERS)

    def line(self) -> str:
        names = ", ".join(f"{d} {v}" for d, v in sorted(self.installed.items())) or "none"
        short = ", ".join(p.replace("ExecutionProvider", "") for p in self.providers) or "-"
        text = f"onnxruntime {self.loaded_version or 'not importable'} (installed: {names}; providers: {short})"
        return text + (f"; problem: {self.problem}; fix: {self.fix}" if self.problem else "")


def installed_distributions(version_of=None) -> dict[str, str]:
    if version_of is None:
        from importlib.metadata import PackageNotFoundError, version

        def version_of(name):
            try:
                return version(name)
            except PackageNotFoundError:
                return None
    found = {}
    for name in ORT_DISTRIBUTIONS:
        ver = version_of(name)
        if ver:
            found[name] = ver
    return found


def diagnose(installed: dict[str, str] | None = None, ort=None) -> OrtInstall:
    """Look at the installed distributions and the loaded module (arguments are for tests)."""
    report = OrtInstall(installed=installed_distributions() if installed is None else dict(installed))
    if ort is None:
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
    if ort is not None:
        report.loaded_version = getattr(ort, "__version__", None)
        report.providers = list(ort.get_available_providers())
    if "onnxruntime" in report.installed and "onnxruntime-gpu" in report.installed:
        state = "GPU providers present" if report.has_gpu_providers else "the CPU build is the one loaded"
        report.problem = ("both onnxruntime and onnxruntime-gpu are installed; they share one module and the last "
                          f"installed wins ({state})")
        report.fix = GPU_FIX
    elif "onnxruntime-gpu" in report.installed and not report.has_gpu_providers and ort is not None:
        report.problem = "onnxruntime-gpu is installed but offers no CUDA/TensorRT provider (a damaged install?)"
        report.fix = GPU_FIX
    elif not report.installed and ort is None:
        report.problem = "no ONNX Runtime is installed"
        report.fix = ("pip install 'tledge[cpu]' (or 'tledge[gpu]' on an NVIDIA machine; "
                      "see docs/reference.md 'GPU install')")
    elif "onnxruntime-gpu" not in report.installed:
        report.fix = GPU_FIX  # only shown when a GPU provider was asked for
    return report
