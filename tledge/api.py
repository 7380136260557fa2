"""The public Python API: `tledge.train`, `tledge.export`, `tledge.load`, `tledge.bench`. The CLI commands
call these same functions, with the same option names (`--img-size` is `img_size=`).

    run = tledge.train("photos/", model="mobilenet_v2", epochs=15, img_size=224)
    exp = tledge.export(run, formats=["onnx", "int8"])
    model = tledge.load(exp["int8"])
    model.predict("img.jpg")[0].label

Bad options raise tledge.TledgeError (a ValueError) before any folder or file is written. Nothing here
imports torch at import time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tledge.errors import TledgeError
from tledge.options import build
from tledge.runtime.model import Model, Prediction, load

if TYPE_CHECKING:
    from tledge.exporting.pipeline import ExportResult

log = logging.getLogger(__name__)

__all__ = ["Run", "train", "evaluate", "export", "verify", "load", "bench", "bench_result", "Model", "Prediction"]


@dataclass
class Run:
    """A finished (or interrupted) training run: its folder and its test metrics."""

    dir: Path
    metrics: dict = field(default_factory=dict)
    interrupted: bool = False

    def __fspath__(self) -> str:  # a Run can be passed wherever a run folder path is expected
        return str(self.dir)


def train(data: str | os.PathLike | None = None, *, resume: str | os.PathLike | None = None, force: bool = False,
          **options: Any) -> Run:
    """Fine-tune a backbone on `data` (class subfolders, or train/val/test folders of them).

    `options` are TrainConfig fields, named as the CLI options are (model, weights, freeze, epochs, img_size,
    project, name, ...). `resume=RUN` continues an interrupted run folder instead (no other options); it
    refuses data that changed since the run started unless `force=True`, and `resume=RUN/foldK` resumes that
    fold of a k-fold run only.
    """
    from tledge.training.config import ResumeOptions, TrainConfig

    resuming = ResumeOptions(resume=resume, force=force)
    if resuming.resume is not None:
        if data is not None or options:
            raise TledgeError("--resume continues a run with its saved options; give no DATA or other options")
        return _resume(Path(resuming.resume), resuming.force)
    if data is None:
        raise TledgeError("train needs DATA (an image folder) or --resume RUN")
    config = build(TrainConfig, {"data": str(data), **options}, "train option")
    return run_training(config)


def run_training(config, *, resume_dir: Path | None = None) -> Run:
    """Train a checked TrainConfig (k-fold when config.kfold), or resume `resume_dir`."""
    from tledge.training.checks import check_config
    from tledge.training.fit import train_run
    from tledge.training.kfold import run_kfold

    check_config(config)  # before any run folder exists
    if config.kfold:
        outcome = run_kfold(config, resume_dir=resume_dir)
        run_dir = Path(outcome["run_dir"])
        return Run(run_dir, outcome.get("summary", {}), outcome.get("interrupted", False))
    result = train_run(config, run_dir=resume_dir, resume=resume_dir is not None)
    return Run(result.run_dir, dict(result.test_metrics or {}), result.interrupted)


def _resume(run_dir: Path, force: bool) -> Run:
    from tledge.training.resume import resume_run

    resumed = resume_run(run_dir, force=force)
    return Run(resumed.run_dir, resumed.metrics, resumed.interrupted)


def evaluate(run: str | os.PathLike, data: str | os.PathLike | None = None, **options: Any) -> dict:
    """Metrics of a trained model (a Run, run folder or best.pt) on its run's test split, or on `data`, a
    labelled folder with the same classes; writes RUN/eval/ (or RUN/eval-<folder>/): metrics.json,
    metrics.md, confusion_matrix.png, samples.png. Returns the metrics dict (accuracy, macro, per_class, ...).
    An exported artifact (.onnx, INT8 .onnx, .engine) is evaluated through its runtime backend, without torch
    (tledge.runtime.evaluate): on its run's test split when it sits in RUN/export/, results in
    RUN/eval/<artifact>/.

    `options` are EvalOptions fields (json, device, batch_size); bad ones raise TledgeError first."""
    from tledge.training.eval_options import EvalOptions

    opts = build(EvalOptions, {"run": run, "data": data, **options}, "eval option")
    from tledge.runtime.evaluate import eval_artifact, is_artifact

    if is_artifact(opts.run):
        return eval_artifact(opts.run, opts.data, opts.json, opts.device, opts.batch_size)
    from tledge.training.evaluate import eval_run

    return eval_run(opts.run, opts.data, opts.json, opts.device, opts.batch_size)


def export(source: str | os.PathLike, formats: str | Sequence[str] | None = None, *, strict: bool = False,
           **options: Any) -> ExportResult:
    """Export a run (a Run, run folder or best.pt) to `formats` (onnx, int8, trt-fp16, trt-int8), check each
    artifact against PyTorch, and return the result: `exp["onnx"]` is a Path, `exp.parity` the parity rows.

    `options` are ExportOptions fields (opset, calib_images, tolerance, out, ...); bad ones raise TledgeError
    before anything is written. Each format is a step: a failed step is a row of the result (its status says
    why) and the others still run. An artifact outside its parity tolerance or a failed step sets
    `exp.failure` (and `exp.exit_code`: 3 parity, 2 or 1 a failed step) and logs a warning; with
    `strict=True` that failure is raised instead. The table (`exp.report()`) is logged at INFO."""
    result = export_result(source, formats, **options)
    log.info(result.report())
    if result.failure is not None:
        if strict:
            raise result.failure
        log.warning(str(result.failure))
    return result


def export_result(source: str | os.PathLike, formats: str | Sequence[str] | None = None,
                  **options: Any) -> ExportResult:
    """`export` without reporting: the result, its `.failure` set rather than raised (the CLI prints the
    table, then raises it)."""
    from tledge.exporting.pipeline import export_run
    from tledge.runtime.model import artifact_path

    source = artifact_path(source, "export()")
    if formats is not None:
        options["formats"] = formats
    return export_run(os.fspath(source), raise_on_failure=False, **options)


def verify(artifact: str | os.PathLike, *, strict: bool = False, **options: Any):
    """Re-check an exported artifact (.onnx, .engine) on this device against the parity pack beside it (or
    `pack=DIR`), with the runtime-only install: no torch, no dataset. Returns a VerifyResult (`.outcome`
    within / over / inconclusive, `.parity`, `.environment`) and records the verdict beside the artifact.
    `options` are VerifyOptions fields (pack, provider, device, threads, tolerance, record); with `strict=True`
    an over-budget or inconclusive verdict is raised (ParityError / ParityInconclusive), as the CLI does. The
    verdict (format_verify) is logged at INFO."""
    from tledge.verification.verify import format_verify, raise_worst, verify as run

    results = run(os.fspath(artifact), **options)
    for result in results if isinstance(results, list) else [results]:
        log.info(format_verify(result))
    if strict:
        raise_worst(results)
    return results


def bench_result(source: str | os.PathLike | Sequence[str | os.PathLike], options=None) -> dict:
    """The whole bench result: rows, machine facts, evaluation set, options (what bench.json holds)."""
    from tledge.runtime.bench import bench as run_bench

    from tledge.runtime.model import artifact_path

    if isinstance(source, (str, os.PathLike)) or source is None or not hasattr(source, "__iter__"):
        source = [source]
    items = [str(artifact_path(s, "bench()")) for s in source]
    return run_bench(items, None, options)


def bench(source: str | os.PathLike | Sequence[str | os.PathLike], **options: Any) -> list[dict]:
    """Benchmark a run (best.pt + every export/*.onnx, *.engine) or a list of artifacts; returns one row per
    artifact × batch size: status, size_mb, accuracy, p50_ms, p99_ms, throughput, speedup.

    `options` are BenchOptions fields (batches, iters, warmup, threads, min_time, device, data)."""
    from tledge.runtime.options import BenchOptions

    return bench_result(source, build(BenchOptions, options, "bench option"))["rows"]
