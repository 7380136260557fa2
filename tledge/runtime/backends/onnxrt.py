"""ONNX Runtime backend. Providers in order TensorRT > CUDA > CPU, as installed; `provider=` forces one.
Needs only numpy and onnxruntime (no torch, no onnx package), so it runs on a bare Jetson image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tledge.card import ModelCard, card_from_onnx_session
from tledge.errors import TledgeError, require
from tledge.runtime.backends.base import Backend

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: list[str], device: str = "auto", provider: str | None = None) -> list[str]:
    """Ordered providers for a session. `device="cpu"` keeps it on the CPU; `provider` forces one."""
    if provider:
        wanted = PROVIDER_ALIASES.get(provider.lower(), provider)
        if wanted not in available:
            raise TledgeError(
                f"ONNX Runtime provider {provider!r} is not available here (have: {', '.join(available)}); "
                "GPU providers need: pip install 'tledge[gpu]'"
            )
        return [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])
    if device == "cpu":
        return ["CPUExecutionProvider"]
    ordered = [p for p in PREFERENCE if p in available]
    if device == "cuda" and not any(p in ordered for p in PREFERENCE[:2]):
        raise TledgeError("device cuda asked for, but this onnxruntime has no CUDA provider; pip install 'tledge[gpu]'")
    return ordered or ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    def __init__(self, path: str | Path, device: str = "auto", provider: str | None = None, threads: int | None = None,
                 spin: bool | None = None):
        """`spin=False` stops idle intra-op threads from busy-waiting between calls, which leaves the cores to
        decode threads in a pipeline; None keeps ONNX Runtime's default (spinning)."""
        ort = require("onnxruntime", "gpu", "running an .onnx model")
        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        if spin is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers = choose_providers(ort.get_available_providers(), device, provider)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - protobuf parse errors, invalid graphs
            raise TledgeError(f"{self.path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        self.card: ModelCard = card_from_onnx_session(self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._check_graph_matches_card()
        active = self.session.get_providers()[0]
        short = {v: k for k, v in PROVIDER_ALIASES.items()}.get(active, active)
        precision = "int8" if ".int8" in self.path.name or self.card.precision.startswith("int8") else self.card.precision
        self.name = f"onnxruntime-{short}-{precision}"

    def _check_graph_matches_card(self) -> None:
        shape = self.session.get_inputs()[0].shape
        height, width = self.card.input_size
        fixed = [d for d in shape[1:] if isinstance(d, int)]
        if len(shape) != 4 or (len(fixed) == 3 and tuple(fixed) != (3, height, width)):
            raise TledgeError(
                f"{self.path}: graph input {shape} disagrees with its model card [N, 3, {height}, {width}]; re-export it"
            )
        self.max_batch = shape[0] if isinstance(shape[0], int) else None

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def close(self) -> None:
        self.session = None
