"""PyTorch backend for .pt checkpoints and run folders: CPU or CUDA (AMP on CUDA when asked; FP32 on CUDA
with TF32 off, so it is a true FP32 baseline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tledge.card import ModelCard
from tledge.errors import TledgeError, require
from tledge.runtime.backends.base import Backend, cap_threads


def resolve_torch_device(device: str = "auto") -> str:
    """The torch device string for `device` (auto, cpu, cuda, cuda:N), by the one resolver training uses."""
    require("torch", "train", "running a .pt checkpoint")
    from tledge.models.device import resolve_device

    return str(resolve_device(device, amp=False).device)


def disable_tf32(torch) -> None:
    """FP32 on CUDA means FP32: cuDNN convolutions (and, if enabled, matmuls) use TF32 by default on Ampere
    and later, ~1e-3 relative off a CPU result; the FP32 baseline of bench and parity must not be TF32."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class TorchBackend(Backend):
    @classmethod
    def read_card(cls, path) -> ModelCard:
        """The card in the checkpoint dict (no model is built)."""
        from tledge.checkpoint import load_checkpoint, resolve_checkpoint

        ckpt = resolve_checkpoint(path)
        state = load_checkpoint(ckpt)
        if "card" not in state:
            raise TledgeError(f"{ckpt} is not a tledge checkpoint (no model card)")
        return ModelCard.from_dict(state["card"], ckpt)

    @classmethod
    def format_label(cls, path) -> str:
        return "pytorch"

    def __init__(self, path: str | Path, device: str = "auto", amp: bool = False, threads: int | None = None):
        torch = require("torch", "train", "running a .pt checkpoint")
        from tledge.models.restore import load_model

        threads, note = cap_threads(threads)
        self.notes = [note] if note else []
        if threads:
            torch.set_num_threads(int(threads))
        self.torch = torch
        self.path = Path(path)
        self.device = resolve_torch_device(device)
        self.model, self.card = load_model(path, self.device)
        self.amp = bool(amp) and self.device.startswith("cuda")
        if self.device.startswith("cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
            if not self.amp:
                disable_tf32(torch)
        self.provider = self.device.split(":")[0]
        self.name = f"torch-{self.provider}-{'amp' if self.amp else 'fp32'}"

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(batch)
            if self.device.startswith("cuda"):
                x = x.pin_memory().to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", enabled=self.amp):
                logits = self.model(x)
            return logits.float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()
