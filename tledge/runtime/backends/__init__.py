"""The artifact-kind table: one row per runtime, naming the files it opens and the backend class that runs them.
Loading, backend options, bench, info, eval, verify and parity all ask this table, so adding a runtime is one
backend module (a `Backend` subclass with `read_card` and `format_label`) plus one row here. Backend modules
import their runtime (onnxruntime, tensorrt, torch) only when a model is opened."""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tledge.errors import TledgeError
from tledge.runtime.backends.base import Backend
from tledge.runtime.backends.onnxrt import OnnxRuntimeBackend
from tledge.runtime.backends.openvino_backend import OpenVINOBackend
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
    module: str  # the Python package it needs (bench adds a row for a second runtime only where it is installed)
    providers: tuple[str, ...] = ()  # --provider values that choose this runtime for a file (cpu, openvino, ...)
    folder: bool = False  # a run folder (its best.pt) opens as this kind
    exported: bool = True  # written by `tledge export`: bench finds it under RUN/export, eval and verify take it

    def opens(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes or (self.folder and path.is_dir())

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    @cached_property
    def options(self) -> frozenset[str]:
        """The keyword options its backend takes besides path and device: read from the constructor itself,
        so the table cannot disagree with the code."""
        params = inspect.signature(self.backend.__init__).parameters.values()
        return frozenset(p.name for p in params if p.name not in ("self", "path", "device")
                         and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


KINDS: tuple[ArtifactKind, ...] = (
    ArtifactKind("torch", (".pt", ".pth"), TorchBackend, "torch", folder=True, exported=False),
    ArtifactKind("onnxruntime", (".onnx",), OnnxRuntimeBackend, "onnxruntime", ("tensorrt", "cuda", "cpu")),
    ArtifactKind("tensorrt", (".engine", ".plan", ".trt"), TensorRTBackend, "tensorrt"),
    ArtifactKind("openvino", (".xml", ".onnx"), OpenVINOBackend, "openvino", ("openvino",)),
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


def kind_of(path: str | Path, provider: str | None = None) -> ArtifactKind:
    """The row that opens `path`: the first one naming its suffix, or, with `provider`, the one that provider
    chooses (openvino runs an .onnx on OpenVINO; cpu, cuda and tensorrt are ONNX Runtime's)."""
    path = Path(path)
    rows = [k for k in KINDS if k.opens(path)]
    if not rows:
        raise TledgeError(f"{path}: unknown artifact type {path.suffix or '(no extension)'!r}; expected "
                          f"{artifact_types()}")
    if provider is None:
        return rows[0]
    chosen = next((k for k in rows if provider in k.providers), None)
    if chosen is None:
        takers = [k.name for k in KINDS if provider in k.providers]
        offered = [p for k in rows for p in k.providers]
        raise TledgeError(f"--provider {provider} is {' or '.join(takers) or 'no runtime'}'s; {path.name} runs on "
                          f"{' or '.join(k.name for k in rows)}"
                          + (f" (--provider {', '.join(offered)})" if offered else " (no --provider)"))
    return chosen


def other_runtimes(path: str | Path) -> list[ArtifactKind]:
    """The installed runtimes besides the default that open `path` (OpenVINO for an .onnx): bench gives each a
    row of its own beside the default's, the same file on the same inputs."""
    path = Path(path)
    rows = [k for k in KINDS if k.opens(path)]
    return [k for k in rows[1:] if k.installed()]


def artifact_kind(path: str | Path) -> str:
    """The name of the runtime that opens `path` by default (torch, onnxruntime, tensorrt)."""
    return kind_of(path).name


def backend_options(path: str | Path, given: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None,
                    runtime: str | None = None) -> dict:
    """The options for `path`'s backend. `given` are what the user asked for: one its backend does not take is an
    error naming the flag (--fp16 on an .engine); a `provider` there may choose the runtime (kind_of).
    `defaults` are the caller's choices (spin=False in a pipeline, the largest batch of a bench): kept where the
    backend takes them, dropped elsewhere. None and False in `given` mean "not asked". `runtime` names the row
    when the caller chose one (bench's second-runtime rows)."""
    given = {k: v for k, v in (given or {}).items() if v is not None and v is not False}
    kind = _row(path, given.get("provider"), runtime)
    options: dict = {}
    for name, value in (defaults or {}).items():
        if value is not None and name in kind.options:
            options[name] = value
    for name, value in given.items():
        if name == "provider":
            options[name] = value  # chose the row; load_backend passes it on where the backend takes it
            continue
        if name not in kind.options:
            takers = list(dict.fromkeys(k.suffixes[0] for k in KINDS if name in k.options))
            raise TledgeError(f"{_FLAGS.get(name, '--' + name.replace('_', '-'))} applies to "
                              f"{' and '.join(takers) or 'no'} artifacts only ({Path(path).name} runs on {kind.name})")
        options[name] = value
    if runtime is not None:
        options["runtime"] = runtime
    return options


def _row(path: str | Path, provider: str | None, runtime: str | None) -> ArtifactKind:
    if runtime is None:
        return kind_of(path, provider)
    row = next((k for k in KINDS if k.name == runtime), None)
    if row is None or not row.opens(Path(path)):
        raise TledgeError(f"{Path(path).name}: {runtime} does not open {Path(path).suffix or 'this'} files")
    return row


def load_backend(path: str | Path, device: str = "auto", provider: str | None = None, runtime: str | None = None,
                 **options) -> Backend:
    """Open an artifact for inference with its kind's backend (or the one `provider` or `runtime` chooses).
    `options` go to the backend (threads=, fp16=, ...); one it does not take is an error."""
    path = Path(path)
    if not path.exists():
        raise TledgeError(f"no such file or folder: {path}")
    kind = _row(path, provider, runtime)
    if provider is not None and "provider" in kind.options:
        options["provider"] = provider
    unknown = sorted(set(options) - kind.options)
    if unknown:
        raise TledgeError(f"{path.name} runs on {kind.name}, which takes no {', '.join(unknown)} option")
    return kind.backend(path, device=device, **options)
