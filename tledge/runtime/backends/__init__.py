"""The artifact-kind table: one row per runtime, naming the files it opens and the backend class that runs them.
Loading, backend options, bench, info, eval, verify and parity all ask this table, so adding a runtime is one
backend module (a `Backend` subclass with `read_card` and `format_label`) plus one row here. Backend modules
import their runtime (onnxruntime, tensorrt, torch) only when a model is opened."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tledge.errors import TledgeError
from tledge.runtime.backends.base import Backend
from tledge.runtime.backends.onnxrt import OnnxRuntimeBackend
from tledge.runtime.backends.tensorrt_backend import TensorRTBackend
from tledge.runtime.backends.torch_backend import TorchBackend

__all__ = ["Backend", "ArtifactKind", "KINDS", "kind_of", "artifact_kind", "load_backend", "backend_options",
           "artifact_types", "exported_suffixes"]


@dataclass(frozen=True)
class ArtifactKind:
    """A runtime and the artifacts it opens."""

    name: str  # the runtime: first word of every backend name it makes (onnxruntime-cpu-int8), bench's backend column
    suffixes: tuple[str, ...]  # file suffixes it opens; the first row naming a suffix is that suffix's default
    backend: type[Backend]
    folder: bool = False  # a run folder (its best.pt) opens as this kind
    exported: bool = True  # written by `tledge export`: bench finds it under RUN/export, eval and verify take it

    @cached_property
    def options(self) -> frozenset[str]:
        """The keyword options its backend takes besides path and device: read from the constructor itself,
        so the table cannot disagree with the code."""
        params = inspect.signature(self.backend.__init__).parameters.values()
        return frozenset(p.name for p in params if p.name not in ("self", "path", "device")
                         and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


KINDS: tuple[ArtifactKind, ...] = (
    ArtifactKind("torch", (".pt", ".pth"), TorchBackend, folder=True, exported=False),
    ArtifactKind("onnxruntime", (".onnx",), OnnxRuntimeBackend),
    ArtifactKind("tensorrt", (".engine", ".plan", ".trt"), TensorRTBackend),
)

# What an option is called on the command line, where that is not --name-with-dashes.
_FLAGS = {"cache_dir": "--cache"}


def artifact_types() -> str:
    """'a run folder, .pt, .onnx or .engine': every kind of file the table opens, for help texts and messages."""
    names = ["a run folder"] + [kind.suffixes[0] for kind in KINDS]
    return ", ".join(names[:-1]) + " or " + names[-1]


def exported_suffixes() -> tuple[str, ...]:
    """The suffixes `tledge export` writes (bench lists these under RUN/export)."""
    return tuple(dict.fromkeys(s for kind in KINDS if kind.exported for s in kind.suffixes))


def kind_of(path: str | Path, runtime: str | None = None) -> ArtifactKind:
    """The row that opens `path`: the first one naming its suffix, or the row called `runtime` when given."""
    path = Path(path)
    if runtime is not None:
        row = next((k for k in KINDS if k.name == runtime), None)
        if row is None:
            raise TledgeError(f"unknown runtime {runtime!r}; choose from {', '.join(k.name for k in KINDS)}")
        if not (path.suffix.lower() in row.suffixes or (row.folder and path.is_dir())):
            raise TledgeError(f"{path.name}: {runtime} opens {', '.join(row.suffixes)} files, not this one")
        return row
    if path.is_dir():
        return next(k for k in KINDS if k.folder)
    for kind in KINDS:
        if path.suffix.lower() in kind.suffixes:
            return kind
    raise TledgeError(f"{path}: unknown artifact type {path.suffix or '(no extension)'!r}; expected {artifact_types()}")


def artifact_kind(path: str | Path) -> str:
    """The name of the runtime that opens `path` by default (torch, onnxruntime, tensorrt)."""
    return kind_of(path).name


def backend_options(path: str | Path, given: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
                    runtime: str | None = None) -> dict:
    """The options for `path`'s backend. `given` are what the user asked for: one its backend does not take is an
    error naming the flag (--provider on an .engine). `defaults` are the caller's choices (spin=False in a
    pipeline, the largest batch of a bench): kept where the backend takes them, dropped elsewhere. None and
    False in `given` mean "not asked"."""
    kind = kind_of(path, runtime)
    options: dict = {}
    for name, value in (defaults or {}).items():
        if value is not None and name in kind.options:
            options[name] = value
    for name, value in (given or {}).items():
        if value is None or value is False:
            continue
        if name not in kind.options:
            takers = list(dict.fromkeys(k.suffixes[0] for k in KINDS if name in k.options))
            raise TledgeError(f"{_FLAGS.get(name, '--' + name.replace('_', '-'))} applies to "
                              f"{' and '.join(takers) or 'no'} artifacts only ({Path(path).name} runs on {kind.name})")
        options[name] = value
    return options


def load_backend(path: str | Path, device: str = "auto", runtime: str | None = None, **options) -> Backend:
    """Open an artifact for inference with its kind's backend (or `runtime`'s). `options` go to the backend
    (provider=, threads=, ...); one it does not take is an error."""
    path = Path(path)
    if not path.exists():
        raise TledgeError(f"no such file or folder: {path}")
    kind = kind_of(path, runtime)
    unknown = sorted(set(options) - kind.options)
    if unknown:
        raise TledgeError(f"{path.name} runs on {kind.name}, which takes no {', '.join(unknown)} option")
    return kind.backend(path, device=device, **options)
