"""The model card: everything the runtime needs to use an artifact, carried by every artifact.

A checkpoint stores it as a dict, an ONNX file in `metadata_props["tledge.card"]`, a TensorRT engine in
the sidecar `<engine>.json`. So `tledge predict` never needs the training config, and nobody types
labels, input names or normalisation constants by hand.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tledge import __version__
from tledge.errors import TledgeError

CARD_FORMAT_VERSION = 1
ONNX_METADATA_KEY = "tledge.card"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_POLICIES = ("stretch", "center_crop")
LAYOUTS = ("NCHW",)
CHANNEL_ORDERS = ("RGB",)


@dataclass
class ModelCard:
    """What a classifier expects and what it was trained on. Plain JSON-able values only."""

    arch: str
    class_names: list[str]
    input_size: tuple[int, int] = (224, 224)  # (H, W)
    resize: str = "stretch"  # "stretch": resize to H×W; "center_crop": shorter side to H/0.875, crop
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"
    layout: str = "NCHW"
    precision: str = "fp32"
    head: str = "linear"
    dropout: float = 0.0
    arch_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"width_mult": 0.25} for tiny models
    weights_origin: str = "none"
    dataset_fingerprint: str = ""
    checkpoint_sha256: str = ""  # the best.pt an artifact was exported from (stale-artifact check)
    best_metrics: dict[str, float] = field(default_factory=dict)
    input_name: str = "input"
    output_name: str = "logits"
    extra: dict[str, Any] = field(default_factory=dict)  # export/runtime facts: int8 flavour, TensorRT version...
    format_version: int = CARD_FORMAT_VERSION
    tledge_version: str = __version__
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def __post_init__(self):
        """Every field the runtime relies on is checked here, so a damaged or hand-edited card is one line
        (`card_problem`), not a wrong answer or a crash at the first image."""
        problem = card_problem(self)
        if problem:
            raise TledgeError(f"model card: {problem}")
        self.class_names = [str(c) for c in self.class_names]
        self.input_size = tuple(int(v) for v in self.input_size)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_format(self) -> str:
        """"float" (normalized float32 NCHW: the default), or a model with the normalization in its graph
        (`tledge export --input`): "uint8" (uint8 RGB NHWC), "uint8-nchw", "pixels" (float32 0-255 NCHW)."""
        facts = self.extra.get("input") if isinstance(self.extra, dict) else None
        return str(facts.get("format", "float")) if isinstance(facts, dict) else "float"

    @property
    def output_kind(self) -> str:
        """"logits" (default) or "probs" (softmax in the graph: `tledge export --output probs`)."""
        facts = self.extra.get("input") if isinstance(self.extra, dict) else None
        return str(facts.get("output", "logits")) if isinstance(facts, dict) else "logits"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["num_classes"] = self.num_classes
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> "ModelCard":
        """The card in `data`; a problem is a TledgeError that names `source` (the file it came from)."""
        if source is not None:
            try:
                return cls.from_dict(data)
            except TledgeError as exc:
                raise TledgeError(f"{source}: {exc}") from None
        if not isinstance(data, dict) or "arch" not in data or "class_names" not in data:
            raise TledgeError("not a tledge model card (no 'arch' or 'class_names')")
        version = data.get("format_version", 1)
        if not _is_int(version) or version < 1:
            raise TledgeError(f"model card: format_version {version!r} must be a whole number from 1 to "
                              f"{CARD_FORMAT_VERSION}")
        if version > CARD_FORMAT_VERSION:
            raise TledgeError(
                f"model card format {version} is newer than this tledge understands ({CARD_FORMAT_VERSION}); "
                "upgrade tledge"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes) -> "ModelCard":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | Path | None = None) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TledgeError(f"{source}: model card is not valid JSON: {exc}" if source is not None
                              else f"model card is not valid JSON: {exc}") from None
        return cls.from_dict(data, source)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ModelCard":
        path = Path(path)
        if not path.is_file():
            raise TledgeError(f"model card not found: {path}")
        return cls.from_json(path.read_text(), path)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _numbers(value: Any, count: int) -> list[float] | None:
    """`value` as `count` finite numbers, or None when it is not that."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != count:
        return None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


def card_problem(card: ModelCard) -> str | None:
    """What is wrong with a card's fields (sizes, mean/std, classes, layout, resize policy), or None."""
    names = card.class_names
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        return f"class_names must be a list of names, got {type(names).__name__}"
    if len(names) < 2:
        return f"a model card needs at least 2 classes, got {len(names)}"
    repeated = sorted({str(n) for n in names if [str(m) for m in names].count(str(n)) > 1})
    if repeated:
        return f"class_names repeat {', '.join(repeated)}; each class needs its own name"
    size = card.input_size
    if (isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2
            or not all(_is_int(v) and v >= 1 for v in size)):
        return f"input_size {size!r} must be two positive whole numbers [H, W]"
    if _numbers(card.mean, 3) is None:
        return f"mean {card.mean!r} must be 3 finite numbers (R, G, B)"
    std = _numbers(card.std, 3)
    if std is None or 0.0 in std:
        return f"std {card.std!r} must be 3 finite, non-zero numbers (R, G, B)"
    layouts = LAYOUTS + (("NHWC",) if card.input_format == "uint8" else ())  # `export --input uint8` is NHWC
    if card.layout not in layouts:
        return f"layout {card.layout!r} is not supported; expected {', '.join(layouts)}"
    if card.channel_order not in CHANNEL_ORDERS:
        return f"channel_order {card.channel_order!r} is not supported; expected {', '.join(CHANNEL_ORDERS)}"
    if card.resize not in RESIZE_POLICIES:
        return f"unknown resize policy {card.resize!r}; expected one of {RESIZE_POLICIES}"
    if not _is_int(card.format_version) or not 1 <= card.format_version <= CARD_FORMAT_VERSION:
        return f"format_version {card.format_version!r} must be a whole number from 1 to {CARD_FORMAT_VERSION}"
    return None


def card_from_onnx(path: str | Path) -> ModelCard:
    """Read the card from an ONNX file's metadata without loading weights into a session."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY:
            return ModelCard.from_json(prop.value, path)
    raise TledgeError(f"{path} has no tledge model card in its metadata; export it with `tledge export`")


def card_from_onnx_session(session, source: str | Path | None = None) -> ModelCard:
    """Read the card through an onnxruntime session (no `onnx` package needed: works on a bare Jetson);
    problems name `source`, the file."""
    meta = session.get_modelmeta().custom_metadata_map
    if ONNX_METADATA_KEY not in meta:
        what = source if source is not None else "this ONNX file"
        raise TledgeError(f"{what} has no tledge model card in its metadata; export it with `tledge export`")
    return ModelCard.from_json(meta[ONNX_METADATA_KEY], source)


def embed_in_onnx(model, card: ModelCard) -> None:
    """Put the card into an `onnx.ModelProto`'s metadata_props (replacing an older one)."""
    kept = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = card.to_json()


def engine_sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text so that a crash leaves either the old file or the new one, never half of one."""
    from tledge.atomic import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))
