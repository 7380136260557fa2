"""`tledge train`, `tledge eval`, `tledge weights`: option parsing only; the work is in the library.
Nothing here imports torch at import time (the root CLI must load on torch-less Jetson images)."""

from __future__ import annotations

from pathlib import Path

import click

from tledge.errors import Interrupted
from tledge.options import click_options, given
from tledge.training.config import ResumeOptions, TrainConfig
from tledge.training.eval_options import EvalOptions


@click.command("train")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click_options(TrainConfig)
@click_options(ResumeOptions)
def train_command(data, resume, force, **values):
    """Fine-tune an ImageNet backbone on DATA, a folder of class subfolders (or train/val/test folders)."""
    from tledge.api import train

    run = train(data, resume=resume, force=force, **given(values, TrainConfig))
    if run.interrupted:
        raise Interrupted("training stopped by Ctrl-C (see the resume command above)")


@click.command("eval")
@click_options(EvalOptions)
def eval_command(run, data, **values):
    """Metrics and plots of RUN (run folder, .pt, .onnx or .engine) on its test split, or on DATA."""
    from tledge.api import evaluate

    evaluate(run, data, **given(values, EvalOptions))


@click.group("weights")
def weights_group():
    """ImageNet weights for offline machines (air-gapped Jetsons, CI)."""


@weights_group.command("add")
@click.argument("file", type=click.Path(path_type=Path))
def weights_add(file):
    """Check a downloaded torchvision weight FILE by its hash and install it into torch's cache."""
    from tledge.models.weights import add_weights

    entry, target = add_weights(file)
    click.echo(f"{entry.arch} {entry.tag}: installed {target}")


@weights_group.command("list")
def weights_list():
    """Every backbone, its ImageNet weight file, and whether it is in the local cache."""
    from tledge.table import format_table
    from tledge.models.backbones import get_spec
    from tledge.models.weights import cache_dir, known_weights

    rows = [
        {"model": w.arch, "weights": w.tag, "file": w.filename,
         "default": "yes" if get_spec(w.arch).weights_tag == w.tag else "",
         "cached": "yes" if (cache_dir() / w.filename).is_file() else "no"}
        for w in known_weights()
    ]
    click.echo(format_table(rows))
    click.echo(f"cache: {cache_dir()}")


COMMANDS = [train_command, eval_command, weights_group]
