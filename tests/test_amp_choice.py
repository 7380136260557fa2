"""The AMP precision on CUDA comes from compute capability, not torch.cuda.is_bf16_supported() (true by
emulation on pre-Ampere GPUs). CUDA is mocked: these run on any machine."""

import pytest
import torch

from tledge.models import device as device_mod


@pytest.mark.parametrize("capability, name, expected, scaled", [
    ((7, 5), "Tesla T4", torch.float16, True),
    ((7, 0), "Tesla V100", torch.float16, True),
    ((7, 2), "Jetson Xavier", torch.float16, True),
    ((8, 0), "A100", torch.bfloat16, False),
    ((8, 7), "Orin", torch.bfloat16, False),
    ((9, 0), "H100", torch.bfloat16, False),
])
def test_amp_dtype_from_compute_capability(monkeypatch, capability, name, expected, scaled):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what pre-Ampere GPUs say
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    setup = device_mod.resolve_device("cuda", amp=True)
    assert setup.amp_dtype == expected
    assert (setup.amp_dtype == torch.float16) is scaled  # fp16 is the one that needs a GradScaler


def test_no_amp_is_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 6))
    assert device_mod.resolve_device("cuda", amp=False).amp_dtype is None
