"""`tledge.train(...)` and `tledge.export(...)` are the public API, and `tledge.train` / `tledge.export` are
also subpackages (tledge/train/, tledge/export/). Python binds a subpackage to its parent's attribute when
it is imported, so the subpackage module itself is made callable: calling it calls the API function."""

from __future__ import annotations

import importlib
import sys
import types


def make_callable(module_name: str, target: str) -> None:
    """Calling module `module_name` calls `target` ("tledge.api:train"), imported on first call."""
    target_module, function = target.split(":")

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module(target_module), function)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"Calls {target_module}.{function}; see its docstring."
    sys.modules[module_name].__class__ = CallableModule
