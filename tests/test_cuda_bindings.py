"""tledge's CUDA runtime helpers against the REAL cuda-bindings (cuda-python), which imports and answers
without a GPU: handle semantics (what TensorRT's execute_async_v3 must get as its stream).
The hand-written stand-in (tests/fake_tensorrt_runtime.py) is checked against the same facts, so the backend
tests that use it cannot drift from the real library again. Skipped where cuda-bindings is absent (torch's
CUDA wheels bring it)."""

from __future__ import annotations

import pytest

import fake_tensorrt_runtime as fake_trt
from tledge.runtime.backends import cuda_runtime


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
