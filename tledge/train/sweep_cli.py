"""`tledge sweep`: option parsing only; the grid, the runs and the results are in tledge.train.sweep.
Nothing here imports torch at import time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tledge.errors import TledgeError, require

# CLI option → grid axis; each takes a comma list, and a list of several values makes it a grid axis.
LIST_OPTIONS = {
    "models": "model", "freeze": "freeze", "optimizer": "optimizer", "lr": "lr", "epochs": "epochs",
    "kfold": "kfold", "img_size": "img_size", "batch_size": "batch_size", "augment": "augment", "head": "head",
    "weights": "weights", "seed": "seed", "scheduler": "scheduler",
}
# config-file keys that are not TrainConfig options
SWEEP_KEYS = ("data", "project", "name", "devices")


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def read_sweep_file(path: Path) -> dict:
    """A JSON (or, with pyyaml, YAML) mapping: data, project, name, devices, grid axes as lists, and any
    other training option (split, workers, amp, arch_kwargs, …) as a single value."""
    if not path.is_file():
        raise TledgeError(f"sweep config {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml = require("yaml", "train", f"reading {path.name}")
            spec = yaml.safe_load(text)
        else:
            spec = json.loads(text)
    except (ValueError, AttributeError) as exc:  # json.JSONDecodeError, yaml.YAMLError are ValueErrors … mostly
        raise TledgeError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise TledgeError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
        raise
    if not isinstance(spec, dict):
        raise TledgeError(f"{path} must hold a mapping of options (data, models, freeze, …)")
    return spec


def build_grid(spec: dict):
    """Sweep spec (config file and/or CLI options) → (base TrainConfig, axes, project, name, devices)."""
    import dataclasses

    from tledge.train.config import TrainConfig
    from tledge.train.sweep import AXIS_ALIASES, AXIS_TYPES, coerce

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "project", "name", "exist_ok", "device"}
    data = spec.get("data")
    if not data:
        raise TledgeError("tledge sweep needs DATA (an image folder), a --config file with 'data', or --resume")
    axes, base = {}, {}
    for key, value in spec.items():
        if key in SWEEP_KEYS:
            continue
        name = AXIS_ALIASES.get(key, key).replace("-", "_")
        if name in AXIS_TYPES and isinstance(value, (list, tuple)):
            axes[name] = list(value)
        elif name in AXIS_TYPES:
            base[name] = coerce(name, value)
        elif name in fields:
            base[name] = value
        else:
            raise TledgeError(f"unknown sweep option {key!r}; axes: {', '.join(AXIS_TYPES)}; "
                              f"other options: {', '.join(sorted(fields - set(AXIS_TYPES)))}")
    if "split" in base:
        base["split"] = _parse_split(base["split"])
    try:
        config = TrainConfig(data=str(Path(data).resolve()), **base)
    except TypeError as exc:
        raise TledgeError(f"bad sweep options: {exc}") from None
    return config, axes, spec.get("project", "runs"), spec.get("name"), spec.get("devices")


def _parse_split(value) -> tuple[float, float, float]:
    parts = _split_list(value) if isinstance(value, str) else list(value)
    try:
        split = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        split = ()
    if len(split) != 3:
        raise TledgeError(f"bad split {value!r}; expected three fractions like 0.8,0.1,0.1")
    return split


@click.command("sweep")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="Sweep file (JSON, or YAML with pyyaml): data, options, grid axes as lists.")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue a sweep folder: finished cells are skipped, started ones resume.")
@click.option("--models", default=None, help="Comma list of backbones, e.g. resnet18,alexnet.")
@click.option("--freeze", default=None, help="Comma list: none, all, stages:K, last:N.")
@click.option("--optimizer", default=None, help="Comma list: adam, adamw, sgd, adadelta.")
@click.option("--lr", default=None, help="Comma list of learning rates (default: each optimizer's usual).")
@click.option("--epochs", default=None, help="Comma list of epoch counts.")
@click.option("--kfold", default=None, help="K-fold cross-validation per cell (comma list; 0: off).")
@click.option("--img-size", default=None, help="Comma list of input sizes in px.")
@click.option("--batch-size", default=None, help="Comma list of batch sizes.")
@click.option("--augment", default=None, help="Comma list: none, light, standard, strong.")
@click.option("--head", default=None, help="Comma list: linear, mlp.")
@click.option("--weights", default=None, help="Comma list: imagenet, none, PATH.")
@click.option("--seed", default=None, help="Comma list of seeds (repeats of the same cell).")
@click.option("--scheduler", default=None, help="Comma list: cosine, step, none.")
@click.option("--split", default=None, help="train,val,test fractions when DATA has no split folders.")
@click.option("--workers", type=int, default=None, help="Data-loading processes per cell.")
@click.option("--patience", type=int, default=None, help="Early stop after N epochs without gain.")
@click.option("--no-amp", is_flag=True, help="Train in float32 on CUDA too.")
@click.option("--project", default=None, help="Folder that holds the sweep folder (default runs).")
@click.option("--name", default=None, help="Sweep folder name (default sweep, sweep2, ...).")
@click.option("--devices", default=None,
              help="Run cells in parallel, one per device: GPU indices (0,1) or cpu,cpu. Default: one at a time.")
def sweep_command(data, config_file, resume, project, name, devices, split, workers, patience, no_amp, **lists):
    """Train every combination of the comma-listed options on DATA, one run folder per cell, then compare
    them in results.md/.csv/.json and results.png (k-fold cells: mean ± std)."""
    from tledge.train import sweep

    if resume is not None:
        if data is not None or config_file is not None or any(v is not None for v in lists.values()):
            raise TledgeError("--resume takes the grid from the sweep folder; give no DATA, --config or grid options")
        from tledge.paths import clean_stale_temp_files

        base, _, saved_devices = sweep.load_grid(resume)
        clean_stale_temp_files(resume)
        cells = sweep.sweep_cells(resume)
        sweep.validate_cells(cells)
        rows = sweep.run_sweep(cells, resume, devices=sweep.parse_devices(devices) or saved_devices)
        _exit(rows)
        return
    spec = read_sweep_file(config_file) if config_file is not None else {}
    given = {
        "data": str(data) if data is not None else None, "project": project, "name": name, "devices": devices,
        "split": split, "workers": workers, "patience": patience, "amp": False if no_amp else None,
        **{LIST_OPTIONS[key]: _split_list(value) for key, value in lists.items() if value is not None},
    }
    spec.update({key: value for key, value in given.items() if value is not None})
    base, axes, project, name, devices = build_grid(spec)
    device_list = sweep.parse_devices(devices)
    sweep_dir, cells = sweep.start_sweep(base, axes, project, name, device_list)
    click.echo(f"sweep {sweep_dir}: {len(cells)} cells: {', '.join(c.name for c in cells)}")
    _exit(sweep.run_sweep(cells, sweep_dir, devices=device_list))


def _exit(rows: list[dict]) -> None:
    """130 when interrupted, 1 when a cell failed (results are written either way), else 0."""
    statuses = {row["status"] for row in rows}
    if statuses & {"interrupted", "pending", "started", "incomplete"}:
        sys.exit(130)
    if "failed" in statuses:
        sys.exit(1)


COMMANDS = [sweep_command]
