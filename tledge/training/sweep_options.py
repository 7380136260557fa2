"""SweepOptions: the options of `tledge sweep`. The grid axes are TrainConfig options given as comma lists;
their help and allowed values come from TrainConfig's fields, and every cell is a TrainConfig, so a grid
value is checked by the same ranges as `tledge train`. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tledge.errors import TledgeError
from tledge.options import option, options_of, reuse, validate, value_range
from tledge.training.config import TrainConfig

_TRAIN = {o.name: o for o in options_of(TrainConfig)}


def split_list(value: Any) -> tuple[str, ...]:
    """'a, b,c' or ['a', 'b'] → ('a', 'b', 'c')."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(v).strip() for v in items if str(v).strip())


def axis(name: str, flag: str | None = None) -> Any:
    """A comma-list option that sweeps TrainConfig option `name`."""
    train = _TRAIN[name]
    values = value_range(train)
    text = f"Comma list of {train.flag} values" + (f" ({values})" if values else "") + f": {train.spec.help}"
    return option(None, text, flag=flag, parse=split_list, metavar="LIST")


@dataclass
class SweepOptions:
    config_file: str | None = option(None, "Sweep file (JSON, or YAML with pyyaml): data, options, grid axes as "
                                     "lists.", flag="--config")
    resume: str | None = option(None, "Continue a sweep folder: finished cells are skipped, started ones resume.")
    models: tuple[str, ...] | None = axis("model", "--models")
    freeze: tuple[str, ...] | None = axis("freeze")
    optimizer: tuple[str, ...] | None = axis("optimizer")
    lr: tuple[str, ...] | None = axis("lr")
    epochs: tuple[str, ...] | None = axis("epochs")
    kfold: tuple[str, ...] | None = axis("kfold")
    img_size: tuple[str, ...] | None = axis("img_size")
    batch_size: tuple[str, ...] | None = axis("batch_size")
    augment: tuple[str, ...] | None = axis("augment")
    head: tuple[str, ...] | None = axis("head")
    weights: tuple[str, ...] | None = axis("weights")
    seed: tuple[str, ...] | None = axis("seed")
    scheduler: tuple[str, ...] | None = axis("scheduler")
    cache_views: tuple[str, ...] | None = axis("cache_views")
    split: str | None = option(None, _TRAIN["split"].spec.help)
    workers: int | None = option(None, "Data-loading processes per cell.", min=0)
    patience: int | None = option(None, "Early stop after N epochs without gain.", min=0)
    amp: bool = option(True, "Train in float32 on CUDA too.", flag="--no-amp", negate=True)
    project: str | None = option(None, "Folder that holds the sweep folder (default runs).")
    name: str | None = option(None, "Sweep folder name (default sweep, sweep2, ...).")
    devices: str | None = option(None, "One study worker process per device, pinned to it: GPU indices (0,1) "
                                 "or cpu,cpu. Default: one worker, this process.")
    search: str = option("grid", "grid: every cell (Optuna's GridSampler); tpe: a TPE search over the same values "
                         "with a trial budget and pruning on per-epoch val accuracy.", choices=("grid", "tpe"))
    trials: int | None = option(None, "Trial budget of --search tpe: this many distinct cells (unset: the grid's "
                                "size).", min=1)
    storage: str | None = option(None, "Study storage URL (postgresql://…, mysql://…) shared by workers that "
                                 "run the same command on other machines. Default: SQLite in the sweep folder.",
                                 metavar="URL")
    shared_cache: bool = option(True, "Cache the frozen part in every cell instead of sharing one cache "
                                "between cells with the same frozen part.", flag="--no-shared-cache", negate=True)
    track: tuple[str, ...] = reuse(TrainConfig, "track")  # the sweep is the parent run, each cell a child

    def __post_init__(self) -> None:
        validate(self)


def check_study_options(opts: SweepOptions) -> None:
    """Options that only make sense together (checked by the CLI before anything is written)."""
    if opts.trials is not None and opts.search == "grid":
        raise TledgeError("--trials is the budget of --search tpe; a grid runs every cell")


# Sweep option → TrainConfig field of its grid axis.
AXIS_OPTIONS = {"models": "model", "freeze": "freeze", "optimizer": "optimizer", "lr": "lr", "epochs": "epochs",
                "kfold": "kfold", "img_size": "img_size", "batch_size": "batch_size", "augment": "augment",
                "head": "head", "weights": "weights", "seed": "seed", "scheduler": "scheduler"}
