"""TensorRT backend for `.engine` files (TensorRT 10+ named-tensor API), with no pycuda.

The engine's sidecar `<engine>.json` holds the model card; `card.extra["tensorrt"]` records the TensorRT
version, GPU name, compute capability, precision and optimisation profile it was built with. An engine only
runs on the TensorRT version and GPU architecture that built it, so a mismatch is a one-line error that says
how to rebuild, instead of a deserialisation crash.

GPU compute time: two CUDA events around `execute_async_v3` give `last_gpu_ms` (the engine's own time,
without copies or host overhead), reported beside host latency by predict and bench.

Inference: named I/O tensors (`num_io_tensors`, `get_tensor_name`, `set_input_shape`,
`set_tensor_address`) and `execute_async_v3` on a CUDA stream. Device buffers come from cuda-python
(`cuda.bindings.runtime`, or the older `cuda.cudart`), or from torch when cuda-python is absent or its
CUDA runtime fails (see cuda_runtime.py). All heavy imports happen in the constructor.

Verified here only against a call-recording stand-in (tests/fake_tensorrt_runtime.py): no TensorRT can be
installed on the development machines. `scripts/gpu_check.sh` is the real check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tledge.card import ModelCard, engine_sidecar_path
from tledge.errors import MissingDependency, TledgeError
from tledge import cuda_runtime
from tledge.runtime.backends.base import Backend

# Attribute names this module uses on TensorRT objects. A test checks each appears in the identifier
# lists taken from TensorRT 10.3 and 11.4's compiled bindings (../shared/tensorrt-api/names-*.txt).
TRT_RUNTIME_API_NAMES = (
    "deserialize_cuda_engine",
    "create_execution_context",
    "num_io_tensors",
    "get_tensor_name",
    "get_tensor_mode",
    "get_tensor_dtype",
    "get_tensor_shape",
    "get_tensor_profile_shape",
    "num_optimization_profiles",
    "set_input_shape",
    "set_tensor_address",
    "execute_async_v3",
    "TensorIOMode",
    "WARNING",
    "FLOAT",
    "HALF",
)
# Also used, but not checkable with those lists: pybind11 class names and some enum members are not stored
# as whole strings there (`Logger`, `Runtime`, `DataType`, `TensorIOMode.INPUT`), and `__version__` is set
# by tensorrt/__init__.py, not by the compiled module.
TRT_UNLISTED_NAMES = ("Logger", "Runtime", "DataType", "INPUT", "__version__")

REBUILD_HINT = "rebuild it on this device: tledge export RUN --formats trt-fp16 (or trt-int8)"


def read_engine_sidecar(engine_path: str | Path) -> ModelCard:
    sidecar = engine_sidecar_path(engine_path)
    if not sidecar.is_file():
        raise TledgeError(f"{engine_path}: its model card {sidecar.name} is missing (export writes it next to the engine)")
    try:
        return ModelCard.from_dict(json.loads(sidecar.read_text()), sidecar)
    except json.JSONDecodeError as exc:
        raise TledgeError(f"{sidecar}: not valid JSON ({exc})") from None


def _version_tuple(text: str | None, parts: int = 3) -> tuple:
    if not text:
        return ()
    return tuple(str(text).split(".")[:parts])


def _capability_text(value) -> str | None:
    """"8.7", [8, 7], (8, 7) or "87" → "8.7"."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ".".join(str(int(v)) for v in value[:2])
    text = str(value)
    if "." not in text and text.isdigit() and len(text) >= 2:
        return f"{text[:-1]}.{text[-1]}"
    return text


def check_engine_compatibility(trt_facts: dict, trt_version: str, capability: str, gpu_name: str, path) -> None:
    """Raise a one-line TledgeError when the engine was built by another TensorRT version or GPU architecture."""
    built_version = trt_facts.get("version")
    if built_version and _version_tuple(built_version) != _version_tuple(trt_version):
        raise TledgeError(f"{Path(path).name} was built with TensorRT {built_version}, this machine has "
                          f"{trt_version}; {REBUILD_HINT}")
    built_cc = _capability_text(trt_facts.get("compute_capability"))
    if built_cc and built_cc != capability:
        built_gpu = trt_facts.get("gpu_name", "another GPU")
        raise TledgeError(f"{Path(path).name} was built for {built_gpu} (compute capability {built_cc}), this GPU is "
                          f"{gpu_name} ({capability}); {REBUILD_HINT}")


# ------------------------------------------------------------------------------------- device memory
class _CudaPythonMemory:
    """Device buffers, copies, a stream and timing events through cuda-python's runtime API."""

    def __init__(self, cudart, index: int = 0):
        self.cudart = cudart
        self.gpu_name, self.capability = cuda_runtime.device_facts(cudart, index)
        if index:
            cuda_runtime.check(cudart.cudaSetDevice(index), "cudaSetDevice")
        self.stream = cuda_runtime.check(cudart.cudaStreamCreate(), "cudaStreamCreate")[0]
        self.stream_handle = cuda_runtime.handle(self.stream)
        self.events = [cuda_runtime.check(cudart.cudaEventCreate(), "cudaEventCreate")[0] for _ in range(2)]
        self._allocations: list[int] = []

    def _call(self, result, what: str):
        return cuda_runtime.check(result, what)

    def allocate(self, nbytes: int) -> int:
        ptr = int(self._call(self.cudart.cudaMalloc(int(nbytes)), "cudaMalloc")[0])
        self._allocations.append(ptr)
        return ptr

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream), "cudaMemcpyAsync")

    def mark(self, index: int) -> None:
        """Record timing event `index` (0 start, 1 end) on the stream."""
        self._call(self.cudart.cudaEventRecord(self.events[index], self.stream), "cudaEventRecord")

    def elapsed_ms(self) -> float:
        """GPU time between the two events (call after synchronize)."""
        return float(self._call(self.cudart.cudaEventElapsedTime(self.events[0], self.events[1]),
                                "cudaEventElapsedTime")[0])

    def synchronize(self) -> None:
        self._call(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        for ptr in self._allocations:
            self.cudart.cudaFree(ptr)
        self._allocations = []
        for event in self.events:
            self.cudart.cudaEventDestroy(event)
        self.events = []
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None


class _TorchMemory:
    """The same, with torch tensors as device buffers (when cuda-python is not installed)."""

    def __init__(self, torch, index: int = 0):
        self.gpu_name, self.capability = cuda_runtime.torch_device_facts(torch, index)
        self.torch = torch
        torch.cuda.set_device(index)
        self.stream = torch.cuda.Stream()
        self.stream_handle = int(self.stream.cuda_stream)
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
        self._buffers: dict[int, object] = {}

    def allocate(self, nbytes: int) -> int:
        buffer = self.torch.empty(int(nbytes), dtype=self.torch.uint8, device="cuda")
        self._buffers[buffer.data_ptr()] = buffer
        return buffer.data_ptr()

    def _view(self, ptr: int, nbytes: int):
        return self._buffers[ptr][:nbytes]

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        src = self.torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            self._view(ptr, host.nbytes).copy_(src, non_blocking=False)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        dst = self.torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            dst.copy_(self._view(ptr, host.nbytes), non_blocking=False)

    def mark(self, index: int) -> None:
        self.events[index].record(self.stream)

    def elapsed_ms(self) -> float:
        return float(self.events[0].elapsed_time(self.events[1]))

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self._buffers = {}


def _device_memory(index: int = 0):
    """cuda-python's buffers, or torch's when cuda-python is missing or its CUDA runtime fails (error 35: a
    CUDA 13 build on an older driver, while torch may be built for CUDA 12): cuda_runtime.with_cuda."""
    try:
        return cuda_runtime.with_cuda(lambda cudart: _CudaPythonMemory(cudart, index),
                                      lambda torch: _TorchMemory(torch, index))
    except cuda_runtime.NoGpu:
        raise TledgeError("no CUDA GPU found; .engine files need an NVIDIA GPU (use the .onnx on CPU)") from None
    except MissingDependency:
        raise MissingDependency(".engine files need cuda-python (or torch with CUDA) for device buffers; install it "
                                "with: pip install 'tledge[gpu]' (on Jetson: 'tledge[jetson]')") from None


# ------------------------------------------------------------------------------------- backend
class TensorRTBackend(Backend):
    @classmethod
    def read_card(cls, path) -> ModelCard:
        return read_engine_sidecar(path)

    @classmethod
    def format_label(cls, path) -> str:
        name = Path(path).name.lower()
        return next((f"tensorrt-{p}" for p in ("int8", "fp16", "fp32") if f".{p}" in name), "tensorrt")

    def __init__(self, path: str | Path, device: str = "auto"):
        self.path = Path(path)
        if device == "cpu":
            raise TledgeError(f"{self.path.name} is a TensorRT engine and runs on a GPU only; use the .onnx with --device cpu")
        self.card = read_engine_sidecar(self.path)
        facts = dict(self.card.extra.get("tensorrt", {}))
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise MissingDependency(f"running {self.path.name} needs TensorRT ({exc}); on Jetson it comes with JetPack, "
                                    "on x86: pip install 'tledge[gpu]'") from None
        self.trt = trt
        from tledge.runtime.backends.onnxrt import device_index

        self.memory = _device_memory(device_index(device))
        check_engine_compatibility(facts, getattr(trt, "__version__", "unknown"), self.memory.capability,
                                   self.memory.gpu_name, self.path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise TledgeError(f"{self.path.name}: TensorRT could not deserialize it (damaged, or built elsewhere); {REBUILD_HINT}")
        self.context = self.engine.create_execution_context()
        self._bind_tensors()
        precision = facts.get("precision") or self.card.precision
        self.name = f"tensorrt-{precision}"
        self.provider = "tensorrt"

    def _bind_tensors(self) -> None:
        trt, engine = self.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) < 1:
            raise TledgeError(f"{self.path.name}: expected one input and at least one output tensor, found {names}")
        self.input_name = inputs[0]
        self.output_name = self.card.output_name if self.card.output_name in outputs else outputs[0]
        min_shape, _, max_shape = (tuple(s) for s in engine.get_tensor_profile_shape(self.input_name, 0))
        height, width = self.card.input_size
        if tuple(max_shape[1:]) != (3, height, width):
            raise TledgeError(f"{self.path.name}: engine input {tuple(max_shape)} disagrees with its model card "
                              f"[N, 3, {height}, {width}]; {REBUILD_HINT}")
        self.min_batch, self.max_batch = int(min_shape[0]), int(max_shape[0])
        self.input_dtype = self._numpy_dtype(engine.get_tensor_dtype(self.input_name))
        self.output_dtype = self._numpy_dtype(engine.get_tensor_dtype(self.output_name))
        # Buffers for the largest batch, allocated once; addresses are set once and reused.
        self.context.set_input_shape(self.input_name, tuple(max_shape))
        out_max = tuple(self.context.get_tensor_shape(self.output_name))
        self.buffers: dict[str, int] = {}
        in_bytes = int(np.prod(max_shape)) * np.dtype(self.input_dtype).itemsize
        self.buffers[self.input_name] = self.memory.allocate(in_bytes)
        for name in outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = self._numpy_dtype(engine.get_tensor_dtype(name))
            self.buffers[name] = self.memory.allocate(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        for name, ptr in self.buffers.items():
            self.context.set_tensor_address(name, ptr)
        self._out_max = out_max

    def _numpy_dtype(self, trt_dtype):
        if trt_dtype == self.trt.DataType.FLOAT:
            return np.float32
        if trt_dtype == self.trt.DataType.HALF:
            return np.float16
        raise TledgeError(f"{self.path.name}: unsupported I/O tensor type {trt_dtype} (expected FLOAT or HALF)")

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if n < self.min_batch:
            raise TledgeError(f"{self.name}: batch {n} is below this engine's minimum {self.min_batch}")
        host_in = np.ascontiguousarray(batch, dtype=self.input_dtype)
        self.context.set_input_shape(self.input_name, tuple(host_in.shape))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        host_out = np.empty(out_shape, dtype=self.output_dtype)
        self.memory.to_device(self.buffers[self.input_name], host_in)
        self.memory.mark(0)
        if not self.context.execute_async_v3(self.memory.stream_handle):
            raise TledgeError(f"{self.name}: TensorRT execution failed (see the TensorRT log above)")
        self.memory.mark(1)
        self.memory.to_host(host_out, self.buffers[self.output_name])
        self.memory.synchronize()  # the copy back must finish before numpy reads host_out
        self.last_gpu_ms = self.memory.elapsed_ms()  # GPU compute time of the engine (trtexec's "GPU Compute")
        return host_out.astype(np.float32, copy=False)

    def synchronize(self) -> None:
        self.memory.synchronize()

    def close(self) -> None:
        memory = getattr(self, "memory", None)
        self.context = None
        self.engine = None
        if memory is not None:
            memory.close()
