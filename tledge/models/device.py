"""Where training runs and with which precision: CUDA with AMP (bf16 from compute capability 8.0, else fp16
with a GradScaler) and channels_last, or the CPU in float32."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from tledge.errors import TledgeError
from tledge.devices import device_problem


@dataclass
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: float32
    channels_last: bool
    pin_memory: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def grad_scaler(self):
        """fp16 needs loss scaling; bf16 and fp32 do not (a disabled scaler is a pass-through)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def describe(self) -> str:
        if not self.is_cuda:
            return f"cpu ({torch.get_num_threads()} threads, float32)"
        name = torch.cuda.get_device_name(self.device)
        precision = {torch.bfloat16: "AMP bf16", torch.float16: "AMP fp16"}.get(self.amp_dtype, "float32")
        return f"{self.device} {name} ({precision}, channels_last)"


def resolve_device(device: str = "auto", amp: bool = True) -> DeviceSetup:
    problem = device_problem(device)  # the rule every --device follows (tledge.runtime.options)
    if problem:
        raise TledgeError(f"--device {device!r}: {problem}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TledgeError("--device cuda asked for, but torch sees no CUDA GPU (CPU-only torch, or no driver)")
    dev = torch.device(device)
    if dev.type != "cuda":
        return DeviceSetup(dev, None, False, False)
    amp_dtype = amp_dtype_for(torch.cuda.get_device_capability(dev)) if amp else None
    return DeviceSetup(dev, amp_dtype, True, True)


def amp_dtype_for(capability: tuple[int, int]) -> torch.dtype:
    """bf16 on compute capability 8.0+ (Ampere, Orin, Hopper), else fp16 with a GradScaler.

    Not `torch.cuda.is_bf16_supported()`: it is true on pre-Ampere GPUs too (T4, V100, Xavier), where bf16
    is emulated and slow."""
    return torch.bfloat16 if tuple(capability)[:2] >= (8, 0) else torch.float16
