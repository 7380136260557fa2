"""A call-recording stand-in for `tensorrt` and cuda-python's runtime, for testing tledge's TensorRT backend
logic (sidecar checks, named-tensor binding, shapes, copies) on machines without a GPU.

This is NOT TensorRT: it checks that tledge calls the API in a sensible order with sensible values. The fake
"engine file" is JSON describing the tensors; "device memory" is host memory, so copies are real memmoves and
the fake engine computes logits = per-channel mean of the input @ WEIGHTS (checkable with numpy).

Where its TensorRT rules come from (names: ../shared/tensorrt-api/names-10.3.0.txt and names-11.4.0.106.txt,
checked by test_runtime.py::test_tensorrt_api_names_exist_in_bindings; usage: NVIDIA/TensorRT
samples/python/common_runtime.py, `allocate_buffers` and `do_inference`; Polygraphy backend/trt/loader.py):
- named I/O tensors: num_io_tensors, get_tensor_name(i), get_tensor_mode(name) == TensorIOMode.INPUT
  (allocate_buffers);
- get_tensor_profile_shape(name, profile) returns (min, opt, max), max sizes the buffers (allocate_buffers);
- set_tensor_address(name, int device pointer), then execute_async_v3(stream_handle) with the stream itself:
  the sample passes the cudaStream_t object, which converts to its handle value, int(stream), never
  getPtr() (do_inference); here both must be ints, the stream the one cudaStreamCreate made;
- deserialize_cuda_engine returns a false value (None) for bytes it cannot read (Polygraphy's EngineFromBytes
  checks `if not engine`).
The cuda-python half: device memory is host memory, but streams and events are cuda-bindings' own
cudaStream_t / cudaEvent_t objects where it is installed (the mirror class Handle otherwise, checked against
the real types in test_cuda_bindings.py).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import sys
import types

import numpy as np

CALLS: list[tuple] = []

try:  # the real handle types where cuda-bindings is installed (it imports without a GPU); Handle below otherwise
    from cuda.bindings import runtime as _REAL_CUDART
except ImportError:
    _REAL_CUDART = None


def weights(num_classes: int) -> np.ndarray:
    return np.arange(3 * num_classes, dtype=np.float32).reshape(3, num_classes) / 10.0 - 1.0


def expected_logits(batch: np.ndarray, num_classes: int) -> np.ndarray:
    return batch.mean(axis=(2, 3)) @ weights(num_classes)


def engine_bytes(input_shape_max, num_classes, min_batch=1, opt_batch=1, input_name="input", output_name="logits",
                 dtype="FLOAT") -> bytes:
    c, h, w = input_shape_max[1:]
    spec = {"input": input_name, "output": output_name, "classes": num_classes, "dtype": dtype,
            "profile": [[min_batch, c, h, w], [opt_batch, c, h, w], list(input_shape_max)]}
    return json.dumps(spec).encode()


def _record(name, *args):
    CALLS.append((name, *args))


class _Enum:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


def make_tensorrt(version="10.3.0"):
    trt = types.ModuleType("tensorrt")
    # A spec like an installed module's: importlib.util.find_spec("tensorrt") raises ValueError for a module in
    # sys.modules without one, and torch._dynamo calls it on first import (a test run alone then fails).
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = version

    class DataType:
        FLOAT = _Enum("FLOAT")
        HALF = _Enum("HALF")

    class TensorIOMode:
        INPUT = _Enum("INPUT")
        OUTPUT = _Enum("OUTPUT")

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity):
            _record("Logger", severity)

    class Context:
        def __init__(self, engine):
            self.engine = engine
            self.shapes = {}
            self.addresses = {}

        def set_input_shape(self, name, shape):
            _record("set_input_shape", name, tuple(shape))
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            spec = self.engine.spec
            n = self.shapes[spec["input"]][0]
            return self.shapes[name] if name == spec["input"] else (n, spec["classes"])

        def set_tensor_address(self, name, ptr):
            if not isinstance(ptr, int):
                raise TypeError(f"set_tensor_address(): incompatible function arguments: ptr {type(ptr).__name__}")
            _record("set_tensor_address", name, ptr)
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            if not isinstance(stream_handle, int):
                raise TypeError(f"execute_async_v3(): stream_handle must be an int, got {type(stream_handle).__name__}")
            if stream_handle not in STREAMS:
                raise ValueError(f"execute_async_v3(): {stream_handle:#x} is not a stream cudaStreamCreate made")
            _record("execute_async_v3", stream_handle)
            spec = self.engine.spec
            shape = self.shapes[spec["input"]]
            dtype = np.float16 if spec["dtype"] == "HALF" else np.float32
            count = int(np.prod(shape))
            x = np.empty(count, dtype=dtype)
            ctypes.memmove(x.ctypes.data, self.addresses[spec["input"]], x.nbytes)
            logits = expected_logits(x.reshape(shape).astype(np.float32), spec["classes"]).astype(dtype)
            ctypes.memmove(self.addresses[spec["output"]], logits.ctypes.data, logits.nbytes)
            return True

    class Engine:
        def __init__(self, spec):
            self.spec = spec
            self.num_io_tensors = 2
            self.num_optimization_profiles = 1

        def get_tensor_name(self, i):
            return [self.spec["input"], self.spec["output"]][i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == self.spec["input"] else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return DataType.HALF if self.spec["dtype"] == "HALF" else DataType.FLOAT

        def get_tensor_profile_shape(self, name, index):
            _record("get_tensor_profile_shape", name, index)
            return [tuple(s) for s in self.spec["profile"]]

        def create_execution_context(self):
            _record("create_execution_context")
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            _record("Runtime")

        def deserialize_cuda_engine(self, data):
            _record("deserialize_cuda_engine", len(data))
            try:
                return Engine(json.loads(bytes(data)))
            except ValueError:
                return None

    trt.DataType, trt.TensorIOMode, trt.Logger, trt.Runtime = DataType, TensorIOMode, Logger, Runtime
    return trt


GPU_MS = 1.25  # what the fake events report between two records
STREAMS: set[int] = set()  # handles the fake cudaStreamCreate gave out (what execute_async_v3 may be given)


class Handle:
    """Like cuda-bindings' cudaStream_t / cudaEvent_t (cuda_bindings/cuda/bindings/runtime.pyx: `__int__`
    returns the handle, `_pvt_ptr[0]`; `getPtr()` returns `_pvt_ptr`, the address where the Python object
    stores it): int(handle) is the stream/event; getPtr() is a host address that is not. Checked against the
    real cuda-bindings in tests/test_cuda_bindings.py (it imports without a GPU)."""

    def __init__(self, value):
        self._storage = ctypes.c_void_p(value)  # what _pvt_ptr points at

    def getPtr(self):
        return ctypes.addressof(self._storage)

    def __int__(self):
        return int(self._storage.value or 0)


def handle(kind: str, value: int):
    """A cudaStream_t / cudaEvent_t: cuda-bindings' own type when it is installed, else the Handle mirror."""
    real = getattr(_REAL_CUDART, kind, None)
    return real(value) if real is not None else Handle(value)


def make_cudart(device_count=1, capability=(8, 7), gpu_name="Fake Orin", device_error=0, driver=12060):
    """device_error=35: every device query answers cudaErrorInsufficientDriver. With `driver` > 0 that is a CUDA
    13 build on an older driver (12060: CUDA 12.6); with driver=0 there is no driver at all: the real
    cuda-bindings 13 answers cudaGetDeviceCount with 35 and cudaDriverGetVersion with (success, 0) then
    (measured on a machine without libcuda, and so documented for cudaDriverGetVersion in NVIDIA's CUDA
    runtime API reference); tests/test_cuda_bindings.py checks it against the real bindings."""
    cudart = types.ModuleType("cuda.bindings.runtime")
    memory: dict[int, np.ndarray] = {}

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def cudaGetDeviceCount():
        if device_error:
            return device_error, 0
        return (0, device_count) if device_count else (100, 0)  # 100: cudaErrorNoDevice

    def cudaDriverGetVersion():
        return 0, driver

    def cudaRuntimeGetVersion():
        return 0, 13000

    def cudaGetDeviceProperties(index):
        return 0, types.SimpleNamespace(major=capability[0], minor=capability[1], name=gpu_name.encode())

    def cudaStreamCreate():
        _record("cudaStreamCreate")
        STREAMS.add(0xBEEF)
        return 0, handle("cudaStream_t", 0xBEEF)

    def cudaSetDevice(index):
        _record("cudaSetDevice", index)
        return (0,) if index < device_count else (101,)  # 101: cudaErrorInvalidDevice

    def cudaEventCreate():
        return 0, handle("cudaEvent_t", 0xE0 + len([c for c in CALLS if c[0] == "cudaEventCreate"]))

    def cudaEventRecord(event, stream):
        _record("cudaEventRecord", int(event), int(stream))
        return (0,)

    def cudaEventElapsedTime(start, end):
        return 0, GPU_MS

    def cudaEventDestroy(event):
        return (0,)

    def cudaMalloc(nbytes):
        buf = np.empty(nbytes, dtype=np.uint8)
        memory[buf.ctypes.data] = buf
        _record("cudaMalloc", nbytes)
        return 0, buf.ctypes.data

    def cudaMemcpyAsync(dst, src, nbytes, kind, stream):
        _record("cudaMemcpyAsync", kind, nbytes)
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaStreamSynchronize(stream):
        _record("cudaStreamSynchronize")
        return (0,)

    def cudaFree(ptr):
        memory.pop(ptr, None)
        return (0,)

    def cudaStreamDestroy(stream):
        return (0,)

    for fn in (cudaGetDeviceCount, cudaGetDeviceProperties, cudaStreamCreate, cudaMalloc, cudaMemcpyAsync,
               cudaStreamSynchronize, cudaFree, cudaStreamDestroy, cudaEventCreate, cudaEventRecord,
               cudaEventElapsedTime, cudaEventDestroy, cudaSetDevice, cudaDriverGetVersion, cudaRuntimeGetVersion):
        setattr(cudart, fn.__name__, fn)
    cudart.cudaMemcpyKind = cudaMemcpyKind
    cudart.memory = memory
    return cudart


def install(monkeypatch, version="10.3.0", device_count=1, capability=(8, 7), gpu_name="Fake Orin", device_error=0,
            driver=12060):
    """Put the stand-ins into sys.modules (undone by monkeypatch at test end)."""
    CALLS.clear()
    STREAMS.clear()
    cudart = make_cudart(device_count, capability, gpu_name, device_error, driver)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(version))
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    return cudart
