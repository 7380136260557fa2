"""`tledge demo`: the whole job on the built-in Fashion-MNIST sample (or `--data DIR`) in a few minutes
on a laptop CPU: train → eval → export (ONNX + INT8, parity-checked) → predict → bench.

Every step calls the same library functions as its own command, so the demo is also the smoke test of
the toolchain (CI runs it with a short setting).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import click

from tledge.errors import TledgeError
from tledge.exporting.formats import parse_formats
from tledge.exporting.options import ExportOptions, parse_names
from tledge.options import click_options, option, reuse, validate
from tledge.runtime.options import BenchOptions
from tledge.training.config import TrainConfig


def _imagenet_available(model: str) -> bool:
    """True when torchvision can load the ImageNet weights (cache or network); says so when not."""
    try:
        from tledge.models.backbones import build_torchvision

        build_torchvision(model, "imagenet")
        return True
    except TledgeError as exc:
        click.echo(f"note: no ImageNet weights ({str(exc).split('. ')[0]}); training from scratch. "
                   "See docs/reference.md 'Offline weights' (tledge weights add).")
        return False


def _step(title: str) -> float:
    click.echo(click.style(f"\n== {title} ==", bold=True))
    return time.perf_counter()


@dataclass
class DemoOptions:
    """`tledge demo`'s options: train's, export's and bench's own fields with the demo's short defaults."""

    data: str | None = option(None, "Any image folder instead of the built-in Fashion-MNIST sample.")
    epochs: int = reuse(TrainConfig, "epochs", 6)
    img_size: int = reuse(TrainConfig, "img_size", 96)
    project: str = reuse(TrainConfig, "project")
    formats: tuple[str, ...] = reuse(ExportOptions, "formats", ("onnx", "int8"))
    bench_iters: int = reuse(BenchOptions, "iters", 30, flag="--bench-iters")

    def __post_init__(self) -> None:
        if self.data is not None:
            self.data = os.fspath(self.data)
        self.project = os.fspath(self.project)
        self.formats = parse_names(self.formats)
        validate(self)
        parse_formats(self.formats)


def run_demo(options: DemoOptions) -> dict:
    from tledge import api
    from tledge.data import demo_data_dir
    from tledge.runtime.bench import format_bench_table, write_bench
    from tledge.runtime.options import PredictRequest
    from tledge.runtime.runner import run_predict
    from tledge.splits import Splits
    from tledge.training.evaluate import eval_run

    data = Path(options.data) if options.data else demo_data_dir()
    epochs, img_size, project, bench_iters = options.epochs, options.img_size, options.project, options.bench_iters
    formats = ",".join(options.formats)
    timings = {}
    started = _step(f"train: mobilenet_v2 on {data}")
    weights = "imagenet" if _imagenet_available("mobilenet_v2") else "none"
    trained = api.train(data, model="mobilenet_v2", weights=weights,
                        freeze="stages:8" if weights == "imagenet" else "none", img_size=img_size, epochs=epochs,
                        batch_size=32, augment="light", lr=1e-3, project=project)
    if trained.interrupted:
        raise click.Abort()
    run = trained.dir
    timings["train_s"] = time.perf_counter() - started

    started = _step(f"eval: tledge eval {run}")
    report = eval_run(run)
    click.echo(f"test accuracy {report['accuracy']:.4f}, macro F1 {report['macro']['f1']:.4f} "
               f"on {report['num_samples']} images; plots in {run / 'eval'}")
    timings["eval_s"] = time.perf_counter() - started

    started = _step(f"export: tledge export {run} --formats {formats}")
    exported = api.export(run, formats=formats)
    if exported.failure is not None:  # the artifacts are written; the demo shows the verdict and goes on
        click.echo(click.style(f"export: {exported.failure}", fg="red"))
    timings["export_s"] = time.perf_counter() - started

    export_dir = run / "export"
    artifact = next((p for p in (export_dir / "model.int8.onnx", export_dir / "model.onnx") if p.is_file()), None)
    if artifact is None:
        raise TledgeError(f"export wrote no ONNX file into {export_dir}")
    test_images = Splits.load(run).paths("test")[:8]
    sample_dir = run / "demo_images"
    sample_dir.mkdir(exist_ok=True)
    for path in test_images:
        target = sample_dir / f"{path.parent.name}_{path.name}"
        if not target.exists():
            target.write_bytes(path.read_bytes())
    started = _step(f"predict: tledge predict {artifact} {sample_dir} --topk 3")
    run_predict(PredictRequest(str(artifact), str(sample_dir), topk=3, batch=1,
                               summary_json=str(run / "demo_predict_summary.json")))
    timings["predict_s"] = time.perf_counter() - started

    started = _step(f"bench: tledge bench {run} --batch 1,16")
    outcome = api.bench_result(run, BenchOptions(batches=(1, 16), iters=bench_iters, warmup=3))
    click.echo(format_bench_table(outcome))
    json_path, _ = write_bench(outcome, run / "bench")
    timings["bench_s"] = time.perf_counter() - started

    click.echo(click.style("\n== done ==", bold=True))
    click.echo(f"everything is in {run}: best.pt, metrics.json, plots, export/, bench/ ({json_path.name})")
    for name, seconds in timings.items():
        click.echo(f"  {name[:-2]:<8} {seconds:6.1f} s")
    click.echo(f"next: tledge predict {artifact} 0 --show    (webcam)")
    return {"run_dir": str(run), "timings": timings, "test_accuracy": report["accuracy"]}


@click.command("demo")
@click_options(DemoOptions)
def demo(**values):
    """Run the whole job (train → eval → export → predict → bench) on built-in real images."""
    run_demo(DemoOptions(**values))


COMMANDS = [demo]
