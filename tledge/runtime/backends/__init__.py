"""`load_backend(path, device)`: the backend is chosen by file type (.pt / run folder → torch,
.onnx → onnxruntime (OpenVINO with provider="openvino"), .engine → TensorRT, .xml → OpenVINO). Heavy imports
happen inside each backend module."""

from __future__ import annotations

from pathlib import Path

from tledge.errors import TledgeError
from tledge.runtime.backends.base import Backend

__all__ = ["Backend", "load_backend", "artifact_kind"]


def artifact_kind(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir() or path.suffix in (".pt", ".pth"):
        return "torch"
    if path.suffix == ".onnx":
        return "onnxruntime"
    if path.suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    if path.suffix == ".xml":  # [issue 23 wiring] OpenVINO IR
        return "openvino"
    raise TledgeError(
        f"{path}: unknown artifact type {path.suffix or '(no extension)'!r}; expected a run folder, .pt, .onnx, "
        ".engine or OpenVINO .xml"
    )


def load_backend(path: str | Path, device: str = "auto", **options) -> Backend:
    """Open an artifact for inference. `options` go to the backend (e.g. provider=, threads=)."""
    path = Path(path)
    if not path.exists():
        raise TledgeError(f"no such file or folder: {path}")
    kind = artifact_kind(path)
    if kind == "torch":
        from tledge.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(path, device=device, **options)
    if kind == "openvino" or (kind == "onnxruntime" and options.get("provider") == "openvino"):  # [issue 23 wiring]
        from tledge.runtime.backends.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(path, device=device, **options)
    if kind == "onnxruntime":
        from tledge.runtime.backends.onnxrt import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device=device, **options)
    from tledge.runtime.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, device=device, **options)
