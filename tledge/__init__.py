"""tledge: image folder to a fast, verified classifier on an edge device.

    import tledge
    run = tledge.train("photos/", model="mobilenet_v2", epochs=15)   # -> Run(.dir, .metrics)
    tledge.evaluate(run, "other_photos/")                            # metrics dict (+ RUN/eval-other_photos/)
    exp = tledge.export(run, formats=["onnx", "int8"])               # exp["int8"] -> Path, exp.parity
    model = tledge.load(exp["int8"])                                 # run folder, .pt, .onnx, .engine
    model.predict("img.jpg")[0].label                                # also arrays, lists, folders
    tledge.verify(exp["int8"])                                       # parity here, from the pack beside it
    tledge.bench(run)                                                # the bench rows

The names are loaded on first use, so `import tledge` stays light (no torch, no OpenCV).
"""

from tledge.errors import TledgeError

__version__ = "0.1.0"
__all__ = ["train", "evaluate", "export", "verify", "load", "bench", "TledgeError", "Run", "Export", "Model", "Prediction",
           "TrainConfig", "EvalOptions", "ExportOptions", "BenchOptions", "PredictRequest", "VerifyOptions"]

_LAZY = {  # public name -> the module that defines it; the jobs are plain functions of tledge.api
    **dict.fromkeys(("train", "evaluate", "export", "verify", "load", "bench", "Run"), "tledge.api"),
    "Export": "tledge.exporting.pipeline", "Model": "tledge.runtime.model", "Prediction": "tledge.runtime.model",
    "TrainConfig": "tledge.training.config", "EvalOptions": "tledge.training.eval_options",
    "ExportOptions": "tledge.exporting.options", "BenchOptions": "tledge.runtime.options",
    "PredictRequest": "tledge.runtime.options", "VerifyOptions": "tledge.verification.verify",
}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tledge' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


def _library_logging() -> None:
    """A library configures no logging: a NullHandler on `tledge` only (the CLI and users add their own)."""
    import logging

    logging.getLogger("tledge").addHandler(logging.NullHandler())


_library_logging()
