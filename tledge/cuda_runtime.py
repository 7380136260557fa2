"""cuda-python's runtime API, imported and read the same way by the TensorRT backend and builder, and the one
GPU probe (`detect_gpu`) and fallback order (`with_cuda`: cuda-python first, then torch) they both use.

Why a module: the CUDA runtime that cuda-python links in is tied to one CUDA major, and a driver older than
that major answers every call with error 35 (cudaErrorInsufficientDriver). That is not "no GPU": it gets its
own message with the fix, and callers fall back to torch's CUDA (built for its own CUDA major) on any CUDA
runtime error, not only when cuda-python is missing. Without any driver (no libcuda: a CPU machine with
cuda-python installed, as torch's CUDA wheels do) the answer is error 35 too; cudaDriverGetVersion, which
reports 0 then, tells the two apart, and no driver is "no GPU".
"""

from __future__ import annotations

from typing import Callable, TypeVar

from tledge.errors import MissingDependency, TledgeError

T = TypeVar("T")

INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver
NO_DEVICE = 100  # cudaErrorNoDevice
DRIVER_FIX = ("install the tledge extra that matches the driver (pip install 'tledge[gpu]' pins CUDA 12, which "
              "needs driver >= 525; 'tledge[gpu-cu13]' needs driver >= 580; on Jetson use JetPack's own packages)")


class NoGpu(TledgeError):
    """No CUDA device here (not a driver or package problem)."""


class CudaRuntimeError(TledgeError):
    """A CUDA runtime call failed; `code` is the cudaError_t number."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def import_cudart():
    """cuda-python's runtime module (cuda.bindings.runtime, or cuda.cudart before 12.6); None if absent."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            return None
    return cudart


def error_code(err) -> int:
    """cudaError_t enum member or int → int."""
    value = getattr(err, "value", err)
    return int(value)


def describe(code: int, what: str, detail: str = "") -> str:
    if code == INSUFFICIENT_DRIVER:
        return (f"{what}: the NVIDIA driver is too old for this CUDA build (CUDA error 35, insufficient driver"
                f"{'; ' + detail if detail else ''}); {DRIVER_FIX}")
    if code == NO_DEVICE:
        return f"{what}: no CUDA GPU found (CUDA error 100)"
    return f"{what} failed (CUDA error {code})"


def check(result, what: str) -> list:
    """Unpack cuda-python's (err, *values) tuple; raise CudaRuntimeError on a non-zero error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    code = error_code(err)
    if code != 0:
        raise CudaRuntimeError(describe(code, what), code)
    return rest


def driver_version(cudart) -> int | None:
    """The CUDA version the installed NVIDIA driver supports (12040 for 12.4) from cudaDriverGetVersion, which
    answers without a device; 0 when no driver is installed (libcuda cannot be loaded); None if it fails."""
    try:
        return int(check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")[0])
    except Exception:  # noqa: BLE001 - an old or partial binding: no answer, not a verdict
        return None


def _cuda_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def device_count(cudart) -> int:
    """cudaGetDeviceCount, with error 35 told apart: no driver at all (cudaDriverGetVersion says 0) is "no GPU"
    (NO_DEVICE), not "driver too old"; a real driver too old says which CUDA it supports and which is needed."""
    try:
        return int(check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")[0])
    except CudaRuntimeError as exc:
        if exc.code != INSUFFICIENT_DRIVER:
            raise
        driver = driver_version(cudart)
        if driver == 0:
            raise CudaRuntimeError("cudaGetDeviceCount: no NVIDIA driver is installed (cudaDriverGetVersion "
                                   "reports none), so no CUDA GPU here", NO_DEVICE) from None
        if driver:
            try:
                needed = int(check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")[0])
            except Exception:  # noqa: BLE001
                needed = 0
            wants = f", cuda-python's runtime is CUDA {_cuda_text(needed)}" if needed else ""
            detail = f"the driver supports CUDA {_cuda_text(driver)}{wants}"
            raise CudaRuntimeError(describe(exc.code, "cudaGetDeviceCount", detail), exc.code) from None
        raise


def device_facts(cudart, index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "8.7") of device `index`; CudaRuntimeError when CUDA cannot answer."""
    count = device_count(cudart)
    if int(count) <= index:
        raise CudaRuntimeError(describe(NO_DEVICE, "cudaGetDeviceCount"), NO_DEVICE)
    props = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")[0]
    name = props.name
    name = (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")
    return name, f"{props.major}.{props.minor}"


def handle(obj) -> int:
    """The handle value of a cuda-python handle (cudaStream_t, cudaEvent_t) as an int, e.g. the stream that
    TensorRT's execute_async_v3 takes. cuda-bindings' `int(handle)` is the handle itself; `getPtr()` is the
    address of the Python object's storage of it (a host address), never the stream (checked against the
    real cuda-bindings in tests/test_cuda_bindings.py)."""
    return int(obj)


def torch_device_facts(torch, index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "8.7") of device `index` through torch's CUDA; NoGpu when it sees none."""
    if not torch.cuda.is_available():
        raise NoGpu("no CUDA GPU found")
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"


def with_cuda(ask_cudart: Callable[[object], T], ask_torch: Callable[[object], T]) -> T:
    """Answer a GPU question through cuda-python, else through torch: the one fallback order of the TensorRT
    builder and backend. Any CUDA runtime error moves on to torch (built for its own CUDA major); when torch
    cannot answer either, that error is raised (once, with its fix: e.g. a driver too old) unless it only
    said "no device". NoGpu when there is no device; MissingDependency when neither package is installed."""
    failure: CudaRuntimeError | None = None
    cudart = import_cudart()
    if cudart is not None:
        try:
            return ask_cudart(cudart)
        except CudaRuntimeError as exc:
            failure = exc
    try:
        import torch
    except ImportError:
        if failure is not None:
            raise (failure if failure.code != NO_DEVICE else NoGpu("no CUDA GPU found")) from None
        raise MissingDependency("CUDA work needs cuda-python (or torch with CUDA): pip install 'tledge[gpu]' (on "
                                "Jetson: 'tledge[jetson]')") from None
    try:
        return ask_torch(torch)
    except Exception as exc:  # noqa: BLE001 - torch without CUDA, or its own CUDA error
        if failure is not None and failure.code != NO_DEVICE:
            raise failure from None
        if failure is not None or isinstance(exc, TledgeError):
            raise (NoGpu("no CUDA GPU found") if failure is not None else exc) from None
        raise TledgeError(f"torch could not open the CUDA device ({str(exc).splitlines()[0][:160]})") from None


def detect_gpu(index: int = 0) -> tuple[str, str] | None:
    """(GPU name, compute capability "8.7") of CUDA device `index`, via cuda-python or torch; None without a
    GPU (or without both packages). A driver too old for cuda-python's CUDA build, with no torch CUDA to
    fall back on, is not "no GPU": its CudaRuntimeError (with the fix) is raised."""
    try:
        return with_cuda(lambda cudart: device_facts(cudart, index), lambda torch: torch_device_facts(torch, index))
    except (NoGpu, MissingDependency):
        return None
