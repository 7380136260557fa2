"""The one GPU probe (cuda_runtime.detect_gpu) and fallback order (with_cuda) of the TensorRT builder and
backend: cuda-python first, torch next, "no GPU" as None, a driver too old raised once with its fix. CUDA is
a stand-in (tests/fake_tensorrt_runtime.py) and torch.cuda is patched: no GPU needed."""

from __future__ import annotations

import pytest

import fake_tensorrt_runtime as fake_trt
from tledge.errors import TledgeError
from tledge import cuda_runtime
from tledge.runtime.backends import tensorrt_backend


@pytest.fixture
def torch_cuda(monkeypatch):
    import torch

    def set_gpu(name=None, capability=(8, 9)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: name is not None)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: name)

    return set_gpu


def test_cuda_python_answers_first(monkeypatch, torch_cuda):
    fake_trt.install(monkeypatch, capability=(8, 7), gpu_name="Fake Orin")
    torch_cuda("Torch GPU")
    assert cuda_runtime.detect_gpu() == ("Fake Orin", "8.7")


@pytest.mark.parametrize("cudart", ["absent", "no device"])
def test_torch_answers_when_cuda_python_cannot(monkeypatch, torch_cuda, cudart):
    if cudart == "absent":
        monkeypatch.setattr(cuda_runtime, "import_cudart", lambda: None)
    else:
        fake_trt.install(monkeypatch, device_count=0)
    torch_cuda("Torch GPU", (7, 2))
    assert cuda_runtime.detect_gpu() == ("Torch GPU", "7.2")
    torch_cuda(None)
    assert cuda_runtime.detect_gpu() is None
    with pytest.raises(TledgeError, match="^no CUDA GPU found; .engine files need an NVIDIA GPU"):
        tensorrt_backend._device_memory()


def test_driver_too_old_is_raised_once_when_torch_cannot_take_over(monkeypatch, torch_cuda):
    fake_trt.install(monkeypatch, device_error=35)
    torch_cuda(None)
    for probe in (cuda_runtime.detect_gpu, tensorrt_backend._device_memory):
        with pytest.raises(cuda_runtime.CudaRuntimeError, match="driver is too old.*error 35") as caught:
            probe()
        assert caught.value.code == 35 and str(caught.value).count("driver is too old") == 1
    torch_cuda("Torch GPU")
    assert cuda_runtime.detect_gpu() == ("Torch GPU", "8.9")


def test_builder_and_backend_share_the_probe():
    from tledge.exporting import tensorrt_build

    assert tensorrt_build.detect_gpu is cuda_runtime.detect_gpu


def test_no_driver_at_all_is_no_gpu_not_a_driver_too_old(monkeypatch, torch_cuda):
    """cuda-bindings without libcuda answers error 35 like a driver too old; cudaDriverGetVersion's 0 tells
    them apart: no driver is "no GPU" (None, and the .engine message), never "driver is too old"."""
    fake_trt.install(monkeypatch, device_error=35, driver=0)
    torch_cuda(None)
    assert cuda_runtime.detect_gpu() is None
    with pytest.raises(TledgeError, match="^no CUDA GPU found; .engine files need an NVIDIA GPU"):
        tensorrt_backend._device_memory()
    with pytest.raises(cuda_runtime.CudaRuntimeError, match="no NVIDIA driver is installed") as caught:
        cuda_runtime.device_facts(fake_trt.make_cudart(device_error=35, driver=0))
    assert caught.value.code == cuda_runtime.NO_DEVICE


def test_driver_too_old_names_both_cuda_versions(monkeypatch, torch_cuda):
    fake_trt.install(monkeypatch, device_error=35, driver=12060)
    torch_cuda(None)
    with pytest.raises(cuda_runtime.CudaRuntimeError, match="driver supports CUDA 12.6, cuda-python's runtime is "
                                                            "CUDA 13.0.*tledge\\[gpu\\]"):
        cuda_runtime.detect_gpu()
