"""EvalOptions: what `tledge eval RUN [DATA]` and `tledge.evaluate(run, data)` take. --device and --batch-size
are train's own fields (tledge.options.reuse), so their help, range and device rule are defined once.
No torch here."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tledge.options import option, reuse, validate
from tledge.training.config import TrainConfig


@dataclass
class EvalOptions:
    """Everything `tledge eval RUN [DATA]` takes; bad values raise TledgeError before anything is written."""

    run: str = option(help="Run folder, best.pt, or an exported .onnx / INT8 .onnx / .engine (no torch needed).",
                      argument=True)
    data: str | None = option(None, "Labelled folder with the model's classes (default: the run's test split, also "
                              "for an artifact in RUN/export/).", argument=True)
    json: str | None = option(None, "Also write the metrics to this JSON file.", metavar="FILE")
    device: str = reuse(TrainConfig, "device")
    batch_size: int = reuse(TrainConfig, "batch_size")

    def __post_init__(self) -> None:
        for name in ("run", "data", "json"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                setattr(self, name, os.fspath(value))  # a Path or Run from Python callers
        validate(self)
