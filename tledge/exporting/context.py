"""What every export step may read, prepared and checked before any file is written (ExportContext), and the
typed output of the one step that is not a file: the INT8 calibration plan the quantizing steps share
(Calibrated). Steps talk through their outputs, never by changing the context."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tledge.splits import Splits


@dataclass(frozen=True)
class CalibrationPlan:
    """The INT8 calibration the options ask for (images, method, float nodes), before any search or QAT."""

    paths: tuple[Path, ...] = ()
    source: str = ""
    method: str = "minmax"
    percentile: float | None = None
    nodes: tuple[str, ...] | None = None
    recipe: dict | None = None  # --int8-recipe's decisions, when given
    search_mode: str = "off"  # INT8 search on val: budget | full | off


@dataclass(frozen=True)
class ExportContext:
    options: Any  # ExportOptions (whose module reads the format table, whose steps read this one)
    ckpt: Path
    run_dir: Path | None
    splits: Splits | None
    model: Any  # the PyTorch FP32 model (the reference every artifact is checked against)
    card: Any
    out: Path
    opset: int
    exporter: str
    profile: Any  # TensorRT optimization profile, when an engine is asked for
    tolerances: dict
    calibration: CalibrationPlan = field(default_factory=CalibrationPlan)
    parity_set: Any = None  # ParityData from --parity-data (checked up front)
    tmp: Path | None = None  # the export's scratch folder, set when the steps run

    @property
    def onnx_batch(self) -> int | None:
        """A fixed ONNX batch only when no engine needs a dynamic N."""
        return self.options.batch if self.profile is None else None


@dataclass(frozen=True)
class Calibrated:
    """The int8-calibration step's output: what the INT8 steps quantize (the ONNX, or its QAT fine-tuned copy)
    and how (method, percentile, float nodes, the cached ranges), with the search and QAT facts for the card."""

    source: Path
    method: str
    percentile: float | None
    nodes: Sequence[str] | None
    cache: Path | None
    images: tuple[Path, ...]
    images_source: str
    search: Any = None  # int8_search.SearchResult
    qat_facts: dict | None = None
    recipe: dict | None = None

    def card_facts(self) -> dict:
        """What an INT8 file's card records of how it was made."""
        return {**({"search": self.search.to_card()} if self.search else {}),
                **({"qat": self.qat_facts} if self.qat_facts else {}),
                **({"recipe_source": self.recipe["source"]} if self.recipe else {})}
