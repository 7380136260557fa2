"""`tledge train`, `tledge eval`, `tledge weights`: option parsing only; the work is in the library.
Nothing here imports torch at import time (the root CLI must load on torch-less Jetson images)."""

from __future__ import annotations

from pathlib import Path

import click

from tledge.errors import Interrupted, TledgeError
from tledge.options import click_options, given
from tledge.train.config import TrainConfig


@click.command("train")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click_options(TrainConfig)
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Continue an interrupted run folder.")
@click.option("--force", is_flag=True, help="With --resume: continue even though the data folder changed since the run started.")
def train_command(data, resume, force, **values):
    """Fine-tune an ImageNet backbone on DATA, a folder of class subfolders (or train/val/test folders)."""
    from tledge.api import train

    options = given(values, TrainConfig)
    if resume is not None:
        if data is not None or options:
            raise TledgeError("--resume continues a run with its saved options; give no DATA or other options")
        run = train(resume=resume, force=force)
    elif force:
        raise TledgeError("--force applies to --resume only (it accepts changed data when resuming)")
    elif data is None:
        raise TledgeError("tledge train needs DATA (an image folder) or --resume RUN")
    else:
        run = train(str(data), **options)
    if run.interrupted:
        raise Interrupted("training stopped by Ctrl-C (see the resume command above)")


@click.command("eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write metrics here.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
def eval_command(run, data, json_path, device, batch_size):
    """Metrics and plots of RUN (run folder or .pt) on its test split, or on DATA with the same classes."""
    from tledge.train.evaluate import eval_run

    eval_run(run, data, json_path, device, batch_size)


@click.group("weights")
def weights_group():
    """ImageNet weights for offline machines (air-gapped Jetsons, CI)."""


@weights_group.command("add")
@click.argument("file", type=click.Path(path_type=Path))
def weights_add(file):
    """Check a downloaded torchvision weight FILE by its hash and install it into torch's cache."""
    from tledge.train.weights import add_weights

    entry, target = add_weights(file)
    click.echo(f"{entry.arch} {entry.tag}: installed {target}")


@weights_group.command("list")
def weights_list():
    """Every backbone, its ImageNet weight file, and whether it is in the local cache."""
    from tledge.table import format_table
    from tledge.train.backbones import get_spec
    from tledge.train.weights import cache_dir, known_weights

    rows = [
        {"model": w.arch, "weights": w.tag, "file": w.filename,
         "default": "yes" if get_spec(w.arch).weights_tag == w.tag else "",
         "cached": "yes" if (cache_dir() / w.filename).is_file() else "no"}
        for w in known_weights()
    ]
    click.echo(format_table(rows))
    click.echo(f"cache: {cache_dir()}")


COMMANDS = [train_command, eval_command, weights_group]
