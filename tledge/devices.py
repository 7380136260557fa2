"""The one rule of every --device (auto, cpu, cuda or cuda:N) and the shared help texts: training, export,
verify, predict and bench all check devices with it, so it sits below all of them. No torch."""

from __future__ import annotations

from typing import Any

from tledge.errors import TledgeError

DEVICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "auto, cpu, cuda or cuda:N (the GPU index also reaches ONNX Runtime's providers and .engine files)."
THREADS_HELP = ("CPU threads for ONNX Runtime / PyTorch (more than the cores this process may use are lowered to them, "
                "with a warning).")


def device_problem(value: Any) -> str | None:
    """What is wrong with a device name (auto, cpu, cuda or cuda:N), or None."""
    text = str(value)
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return None
    return "must be auto, cpu, cuda or cuda:N"


def parse_device(value: Any) -> str:
    """auto, cpu, cuda or cuda:N."""
    problem = device_problem(value)
    if problem:
        raise TledgeError(f"device {problem}, got {str(value)!r}")
    return str(value)
