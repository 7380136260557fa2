"""OpenVINO backend (CPU): an OpenVINO IR (.xml + .bin, `tledge export --formats openvino,openvino-int8`) or an
.onnx read by OpenVINO directly (`--provider openvino`), so one file can be timed on both runtimes.

Why a second CPU runtime: which one is faster depends on the CPU (issue #23 measured OpenVINO INT8 ahead on
an AVX-512 VNNI machine and behind on an AVX2-only one), so bench shows both and predict may choose.

Numerics: OpenVINO's CPU plugin runs float layers in bf16 on CPUs that have it unless told otherwise, so this
backend asks for f32 execution (INFERENCE_PRECISION_HINT) and the backend name says what ran
(openvino-cpu-fp32); `fp16=True` leaves OpenVINO its own choice (bf16 or f16 where the CPU has it), named
accordingly. Q/DQ INT8 graphs run on OpenVINO's integer kernels either way.

The card travels in the IR's rt_info (RT_INFO_PATH; the same JSON the ONNX keeps in metadata_props
"tledge.card"); for an .onnx it is read from the ONNX metadata, which OpenVINO exposes as well.
Needs only numpy and openvino (the `openvino` extra), imported when a backend is opened.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from tledge.card import ONNX_METADATA_KEY, ModelCard
from tledge.errors import TledgeError, require
from tledge.runtime.backends.base import Backend, cap_threads

RT_INFO_PATH = ["tledge", "card"]  # <rt_info><tledge><card value="{card JSON}"/></tledge></rt_info>
SUFFIXES = (".xml",)
PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def artifact_bytes(path: str | Path) -> int:
    """Size of an artifact on disk: an IR's .xml and the .bin beside it (the weights are in the .bin)."""
    path = Path(path)
    files = [path, path.with_suffix(".bin")] if path.suffix in SUFFIXES else [path]
    return sum(f.stat().st_size for f in files if f.is_file())


def import_openvino(why: str = "running an OpenVINO model"):
    """The openvino module, or a one-line MissingDependency naming the extra."""
    return require("openvino", "openvino", why)


def card_from_openvino_model(model, source: str | Path) -> ModelCard:
    """The card of an ov.Model: the IR's rt_info, else the ONNX metadata OpenVINO kept (an .onnx read directly)."""
    for path in (RT_INFO_PATH, ["framework", ONNX_METADATA_KEY]):
        if model.has_rt_info(path):
            return ModelCard.from_json(model.get_rt_info(path).astype(str), source)
    raise TledgeError(f"{source} has no tledge model card; export it with `tledge export --formats openvino`")


def read_openvino_card(path: str | Path) -> ModelCard:
    """The card of an IR (or ONNX) through OpenVINO, without compiling it (`tledge info`)."""
    ov = import_openvino("reading an OpenVINO model card")
    return card_from_openvino_model(_read_model(shared_core(ov), Path(path)), path)


@functools.lru_cache(maxsize=1)
def shared_core(ov):
    """One OpenVINO Core for the process, as OpenVINO advises: a Core destroyed while a model it compiled is
    still alive unloads the plugin under it (the full test suite segfaulted at a later garbage collection)."""
    return ov.Core()


def _read_model(core, path: Path):
    if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise TledgeError(f"{path}: its weights {path.with_suffix('.bin').name} are missing (an IR is the .xml and "
                          "the .bin beside it); copy both")
    try:
        return core.read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - parse errors, unsupported ops
        raise TledgeError(f"{path}: not a loadable OpenVINO model ({str(exc).strip().splitlines()[0][:200]})") from None


class OpenVINOBackend(Backend):
    provider = "cpu"

    @classmethod
    def read_card(cls, path) -> ModelCard:
        return read_openvino_card(path)

    @classmethod
    def format_label(cls, path) -> str:
        return "openvino-int8" if ".int8" in Path(path).name.lower() else "openvino"

    @classmethod
    def artifact_bytes(cls, path) -> int:
        return artifact_bytes(path)

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, fp16: bool = False,
                 strict_fp32: bool = False):
        """`threads`: INFERENCE_NUM_THREADS; `fp16`: let OpenVINO pick bf16/f16 float kernels; `strict_fp32`
        (parity) always f32. OpenVINO takes any batch of a dynamic-batch model."""
        if str(device).startswith("cuda"):
            raise TledgeError(f"device {device}: tledge runs OpenVINO on the CPU only; use --device cpu or auto")
        ov = import_openvino()
        self.path = Path(path)
        self.notes: list[str] = []
        threads, note = cap_threads(threads)
        if note:
            self.notes.append(note)
        core = shared_core(ov)
        model = _read_model(core, self.path)
        self.card: ModelCard = card_from_openvino_model(model, self.path)
        self._check_graph_matches_card(model)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if strict_fp32 or not fp16:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # noqa: BLE001
            raise TledgeError(f"{self.path}: OpenVINO could not compile it for the CPU "
                              f"({str(exc).strip().splitlines()[0][:200]})") from None
        self.request = self.compiled.create_infer_request()
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: f32, bf16 or f16
        hint = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        float_precision = PRECISION_NAMES.get(hint, hint)
        precision = "int8" if self.card.precision.startswith("int8") else float_precision
        self.name = f"openvino-cpu-{precision}"

    def _check_graph_matches_card(self, model) -> None:
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise TledgeError(f"{self.path}: expected one image input, got {len(model.inputs)} inputs; re-export it")
        shape = model.inputs[0].get_partial_shape()
        height, width = self.card.input_size
        want = (height, width, 3) if self.card.input_format == "uint8" else (3, height, width)
        dims = [d.get_length() if d.is_static else None for d in shape]
        fixed = [d for d in dims[1:] if d is not None]
        if len(dims) != 4 or (len(fixed) == 3 and tuple(fixed) != want):
            raise TledgeError(f"{self.path}: graph input {shape} disagrees with its model card "
                              f"[N, {', '.join(map(str, want))}]; re-export it")
        self.max_batch = dims[0]
        out = model.outputs[0].get_partial_shape()
        classes = out[1].get_length() if len(out) == 2 and out[1].is_static else None
        if len(out) != 2 or (classes is not None and classes != self.card.num_classes):
            raise TledgeError(f"{self.path}: the graph gives {out} outputs but its model card names "
                              f"{self.card.num_classes} classes; re-export it")

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return np.array(self.request.get_output_tensor(0).data, copy=True)

    def close(self) -> None:
        self.request = None
        self.compiled = None
