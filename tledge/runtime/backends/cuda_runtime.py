"""cuda-python's runtime API, imported and read the same way by the TensorRT backend and builder.

Why a module: the CUDA runtime that cuda-python links in is tied to one CUDA major, and a driver older than
that major answers every call with error 35 (cudaErrorInsufficientDriver). That is not "no GPU": it gets its
own message with the fix, and callers fall back to torch's CUDA (built for its own CUDA major) on any CUDA
runtime error, not only when cuda-python is missing.
"""

from __future__ import annotations

from tledge.errors import TledgeError

INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver
NO_DEVICE = 100  # cudaErrorNoDevice
DRIVER_FIX = ("install the tledge extra that matches the driver (pip install 'tledge[gpu]' pins CUDA 12, which "
              "needs driver >= 525; 'tledge[gpu-cu13]' needs driver >= 580; on Jetson use JetPack's own packages)")


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


def describe(code: int, what: str) -> str:
    if code == INSUFFICIENT_DRIVER:
        return (f"{what}: the NVIDIA driver is too old for this CUDA build (CUDA error 35, insufficient driver); "
                f"{DRIVER_FIX}")
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


def device_facts(cudart, index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "8.7") of device `index`; CudaRuntimeError when CUDA cannot answer."""
    count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")[0]
    if int(count) <= index:
        raise CudaRuntimeError(describe(NO_DEVICE, "cudaGetDeviceCount"), NO_DEVICE)
    props = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")[0]
    name = props.name
    name = (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")
    return name, f"{props.major}.{props.minor}"


def handle(obj) -> int:
    """The integer address of a cuda-python handle (stream, event). cuda-bindings 13 deprecates int(handle);
    getPtr() is the supported way and exists since cuda-python 11."""
    get_ptr = getattr(obj, "getPtr", None)
    return int(get_ptr()) if callable(get_ptr) else int(obj)
