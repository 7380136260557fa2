"""`tledge train`, `tledge eval`, `tledge weights`: option parsing only; the work is in the library.
Nothing here imports torch at import time (the root CLI must load on torch-less Jetson images)."""

from __future__ import annotations

from pathlib import Path

import click

from tledge.errors import Interrupted, TledgeError

FREEZE_HELP = "none | all | stages:K (freeze first K stages) | last:N (only last N layers + head train)"


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise TledgeError(f"bad --split {text!r}; expected three fractions like 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise TledgeError(f"bad --split {text!r}; expected three fractions like 0.8,0.1,0.1")
    return parts


@click.command("train")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--model", default="mobilenet_v2", show_default=True, help="Backbone (tledge weights list).")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet | none | PATH (state dict or tledge .pt).")
@click.option("--head", type=click.Choice(["linear", "mlp"]), default="linear", show_default=True)
@click.option("--dropout", type=float, default=0.0, show_default=True, help="Dropout before the classifier.")
@click.option("--width-mult", type=float, default=None, help="MobileNetV2 width multiplier (tiny models; no ImageNet weights).")
@click.option("--freeze", default="none", show_default=True, help=FREEZE_HELP)
@click.option("--img-size", type=int, default=224, show_default=True)
@click.option("--resize", type=click.Choice(["stretch", "center_crop"]), default="stretch", show_default=True)
@click.option("--augment", type=click.Choice(["none", "light", "standard", "strong"]), default="standard", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd", "adadelta"]), default="adam", show_default=True)
@click.option("--lr", type=float, default=None, help="Default: adam/adamw 1e-3, sgd 1e-2, adadelta 1.0.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum (Nesterov when > 0).")
@click.option("--scheduler", type=click.Choice(["cosine", "step", "none"]), default="cosine", show_default=True)
@click.option("--step-size", type=int, default=7, show_default=True, help="StepLR period in epochs.")
@click.option("--gamma", type=float, default=0.1, show_default=True, help="StepLR decay.")
@click.option("--warmup-epochs", type=int, default=0, show_default=True, help="Linear warm-up before cosine.")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--patience", type=int, default=0, show_default=True, help="Early stop after N epochs without gain (0: off).")
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="train,val,test fractions when DATA has no split folders.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--workers", type=int, default=None, help="Data-loading processes (default: CPU count - 1, at most 4).")
@click.option("--no-amp", is_flag=True, help="Train in float32 on CUDA too.")
@click.option("--sync-bn", is_flag=True, help="Under torchrun on CUDA: synchronise BatchNorm statistics across GPUs.")
@click.option("--no-cache", is_flag=True, help="With --freeze all: do not cache trunk features.")
@click.option("--kfold", type=int, default=0, show_default=True, help="Stratified K-fold cross-validation over train+val.")
@click.option("--project", default="runs", show_default=True, help="Folder that holds run folders.")
@click.option("--name", default=None, help="Run folder name (default exp, exp2, ...).")
@click.option("--exist-ok", is_flag=True, help="Reuse an existing --name folder.")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Continue an interrupted run folder.")
@click.option("--force", is_flag=True, help="With --resume: continue even though the data folder changed since the run started.")
def train_command(data, resume, force, width_mult, no_amp, no_cache, split, **options):
    """Fine-tune an ImageNet backbone on DATA, a folder of class subfolders (or train/val/test folders)."""
    from tledge.train.config import TrainConfig

    if resume is not None:
        from tledge.train.resume import resume_run

        if resume_run(resume, force=force).interrupted:
            raise Interrupted("training stopped by Ctrl-C (see the resume command above)")
        return
    if force:
        raise TledgeError("--force applies to --resume only (it accepts changed data when resuming)")
    if data is None:
        raise TledgeError("tledge train needs DATA (an image folder) or --resume RUN")
    config = TrainConfig(
        data=str(data),
        arch_kwargs={"width_mult": width_mult} if width_mult else {},
        amp=not no_amp,
        cache_features=not no_cache,
        split=_parse_split(split),
        **options,
    )
    _run(config)


def _run(config, resume_dir: Path | None = None) -> None:
    from tledge.train.fit import train_run
    from tledge.train.kfold import run_kfold

    if config.kfold:
        outcome = run_kfold(config, resume_dir=resume_dir)
        interrupted = outcome.get("interrupted", False)
    else:
        interrupted = train_run(config, run_dir=resume_dir, resume=resume_dir is not None).interrupted
    if interrupted:
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
