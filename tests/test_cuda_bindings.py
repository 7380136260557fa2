"""tledge's CUDA runtime helpers against the REAL cuda-bindings (cuda-python), which imports and answers
without a GPU: handle semantics (what TensorRT's execute_async_v3 must get as its stream) and the no-driver
answer (error 35, as from a driver too old, but cudaDriverGetVersion says 0).
The hand-written stand-in (tests/fake_tensorrt_runtime.py) is checked against the same facts, so the backend
tests that use it cannot drift from the real library again. Skipped where cuda-bindings is absent (the dev
extra and torch's CUDA wheels bring it)."""

from __future__ import annotations

import pytest

import fake_tensorrt_runtime as fake_trt
from tledge import cuda_runtime


@pytest.fixture(scope="module")
def cudart():
    module = cuda_runtime.import_cudart()
    if module is None:
        pytest.skip("cuda-bindings (cuda-python) is not installed")
    return module


def test_handle_is_the_stream_not_the_address_of_its_storage(cudart):
    stream = cudart.cudaStream_t(1234)
    event = cudart.cudaEvent_t(4321)
    assert cuda_runtime.handle(stream) == 1234 and cuda_runtime.handle(event) == 4321
    assert stream.getPtr() != 1234  # the host address where the Python object keeps the handle


def test_stand_in_handles_mean_what_the_real_ones_mean(cudart):
    real, fake = cudart.cudaStream_t(0xBEEF), fake_trt.Handle(0xBEEF)
    assert int(real) == int(fake) == 0xBEEF
    assert real.getPtr() != 0xBEEF and fake.getPtr() != 0xBEEF


def test_real_bindings_without_a_driver_are_no_gpu(cudart, monkeypatch):
    """On a machine without libcuda (this one, CI) cuda-bindings 13 answers cudaGetDeviceCount with error 35,
    the same code as a driver too old; tledge must call that "no GPU"."""
    driver = cuda_runtime.driver_version(cudart)
    if driver != 0:
        pytest.skip(f"an NVIDIA driver is installed here (CUDA {driver}); this checks the no-driver answer")
    assert cuda_runtime.error_code(cudart.cudaGetDeviceCount()[0]) == cuda_runtime.INSUFFICIENT_DRIVER
    with pytest.raises(cuda_runtime.CudaRuntimeError, match="no NVIDIA driver is installed") as caught:
        cuda_runtime.device_facts(cudart)
    assert caught.value.code == cuda_runtime.NO_DEVICE
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_runtime.detect_gpu() is None


def test_stand_in_no_driver_answers_like_the_real_bindings(cudart):
    if cuda_runtime.driver_version(cudart) != 0:
        pytest.skip("an NVIDIA driver is installed here")
    fake = fake_trt.make_cudart(device_error=35, driver=0)
    for name in ("cudaGetDeviceCount", "cudaDriverGetVersion"):
        real_err, *_ = getattr(cudart, name)()
        fake_err, *_ = getattr(fake, name)()
        assert cuda_runtime.error_code(real_err) == cuda_runtime.error_code(fake_err), name
    assert cuda_runtime.driver_version(fake) == cuda_runtime.driver_version(cudart) == 0
