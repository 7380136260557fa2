"""Runtime: run any tledge artifact on any source. Imports without torch for .onnx and .engine files."""

from tledge.runtime.backends import Backend, load_backend

__all__ = ["Backend", "load_backend"]
