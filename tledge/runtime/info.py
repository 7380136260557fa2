"""`tledge info ARTIFACT`: the model card of a run folder, .pt, .onnx or .engine, as a table or JSON."""

from __future__ import annotations

from pathlib import Path

from tledge.card import ModelCard
from tledge.errors import TledgeError
from tledge.runtime.backends import kind_of
from tledge.table import format_table


def read_card(path: str | Path) -> ModelCard:
    """The card without building a model: checkpoint dict, ONNX metadata (via onnxruntime, no torch) or sidecar,
    as the artifact's kind reads it."""
    path = Path(path)
    if not path.exists():
        raise TledgeError(f"no such file or folder: {path}")
    return kind_of(path).backend.read_card(path)


def card_rows(card: ModelCard, path: str | Path | None = None) -> list[dict]:
    data = card.to_dict()
    rows = []
    if path is not None:
        size = _size_mb(Path(path))
        rows.append({"field": "file", "value": f"{path} ({size:.2f} MB)" if size is not None else str(path)})
    order = ["arch", "arch_kwargs", "num_classes", "class_names", "input_size", "resize", "mean", "std",
             "channel_order", "layout", "precision", "head", "weights_origin", "dataset_fingerprint", "best_metrics",
             "input_name", "output_name", "tledge_version", "created", "format_version"]
    for key in order + sorted(k for k in data if k not in order and k != "extra"):
        value = data.get(key)
        if value in (None, "", {}, []):
            continue
        if key == "class_names" and len(value) > 12:
            value = ", ".join(value[:12]) + f", … ({len(value)} in all)"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        rows.append({"field": key, "value": str(value)})
    for group, facts in sorted(data.get("extra", {}).items()):
        if isinstance(facts, dict):
            for key, value in facts.items():
                rows.append({"field": f"{group}.{key}", "value": str(value)})
        else:
            rows.append({"field": group, "value": str(facts)})
    return rows


def _size_mb(path: Path) -> float | None:
    size = kind_of(path).backend.artifact_bytes(path) if path.exists() else 0
    return size / 1e6 if size else None


def format_card(card: ModelCard, path: str | Path | None = None) -> str:
    return format_table(card_rows(card, path))
