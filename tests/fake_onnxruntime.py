"""A stand-in for an onnxruntime-gpu build, for provider logic on machines without a GPU.

It wraps the real (CPU) onnxruntime: sessions really run on the CPU, but the module claims the providers it
is given, records what tledge asked for (providers and their options), and reports as active only the
providers listed in `loads` — the way ONNX Runtime silently falls back when, say, TensorRT's libraries fail
to load. It proves nothing about the GPU providers themselves.
"""

from __future__ import annotations

import sys
import types

import onnxruntime as real_ort

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def make(available=ALL, loads=None, preload_output=""):
    module = types.ModuleType("onnxruntime")
    module.__version__ = real_ort.__version__
    module.SessionOptions = real_ort.SessionOptions
    module.GraphOptimizationLevel = real_ort.GraphOptimizationLevel
    module.SESSIONS = []
    module.EVENTS = []  # ("preload_dlls",) and ("session", requested providers), in order
    loads = set(available if loads is None else loads) | {"CPUExecutionProvider"}

    def get_available_providers():
        return list(available)

    class InferenceSession:
        def __init__(self, path, sess_options=None, providers=None):
            pairs = [p if isinstance(p, tuple) else (p, {}) for p in (providers or ["CPUExecutionProvider"])]
            self.requested = [name for name, _ in pairs]
            self.options = dict(pairs)
            self.active = [name for name in self.requested if name in loads]
            module.SESSIONS.append(self)
            module.EVENTS.append(("session", tuple(self.requested)))
            self._real = real_ort.InferenceSession(str(path), sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return list(self.active)

        def __getattr__(self, name):
            return getattr(self._real, name)

    def preload_dlls(cuda=True, cudnn=True, msvc=True, directory=None):
        """onnxruntime-gpu 1.21+ (onnxruntime/__init__.py): loads CUDA/cuDNN from the nvidia-* wheels and prints
        "Failed to load ..." for each it cannot find; recorded here."""
        module.EVENTS.append(("preload_dlls",))
        if preload_output:
            print(preload_output)

    module.get_available_providers = get_available_providers
    module.preload_dlls = preload_dlls
    module.InferenceSession = InferenceSession
    return module


def install(monkeypatch, available=ALL, loads=None, preload_output=""):
    module = make(available, loads, preload_output)
    monkeypatch.setitem(sys.modules, "onnxruntime", module)
    return module
