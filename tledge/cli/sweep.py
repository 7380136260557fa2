"""`tledge sweep`: option parsing only; the grid, the runs and the results are in tledge.training.sweep.
Nothing here imports torch at import time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tledge.errors import Interrupted, TledgeError, require
from tledge.options import click_options, given
from tledge.training.sweep_options import AXIS_OPTIONS, SweepOptions, check_study_options

# config-file keys that are not TrainConfig options
SWEEP_KEYS = ("data", "project", "name", "devices")


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

    from tledge.training.config import TrainConfig, parse_split
    from tledge.training.sweep_grid import AXIS_ALIASES, AXIS_TYPES, coerce

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
        base["split"] = parse_split(base["split"])
    try:
        config = TrainConfig(data=str(Path(data).resolve()), **base)
    except TypeError as exc:
        raise TledgeError(f"bad sweep options: {exc}") from None
    return config, axes, spec.get("project", "runs"), spec.get("name"), spec.get("devices")


@click.command("sweep")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click_options(SweepOptions)
def sweep_command(data, **values):
    """Train every combination of the comma-listed options on DATA, one run folder per cell, then compare
    them in results.md/.csv/.json and results.png (k-fold cells: mean ± std)."""
    from tledge.training import sweep

    opts = SweepOptions(**given(values, SweepOptions))
    check_study_options(opts)
    lists = {key: getattr(opts, key) for key in AXIS_OPTIONS}
    if opts.resume is not None:
        resume = Path(opts.resume)
        if data is not None or opts.config_file is not None or opts.track or any(v is not None for v in lists.values()):
            raise TledgeError("--resume takes the grid from the sweep folder; give no DATA, --config or grid options")
        from tledge.paths import clean_stale_temp_files

        if opts.search != "grid" or opts.trials is not None or opts.storage is not None or not opts.shared_cache:
            raise TledgeError("--resume takes --search, --trials, --storage and --no-shared-cache from the sweep "
                              "folder's sweep.json")
        base, _, saved_devices = sweep.load_grid(resume)
        devices = sweep.parse_devices(opts.devices) or saved_devices
        _need_optuna()
        clean_stale_temp_files(resume)
        cells = sweep.sweep_cells(resume)
        sweep.validate_cells(cells)
        _exit(_run(sweep, cells, resume, devices))
        return
    _need_optuna()
    spec = read_sweep_file(Path(opts.config_file)) if opts.config_file is not None else {}
    given_values = {
        "data": str(data) if data is not None else None, "project": opts.project, "name": opts.name,
        "devices": opts.devices, "split": opts.split, "workers": opts.workers, "patience": opts.patience,
        "amp": False if not opts.amp else None, "track": list(opts.track) or None,
        **{AXIS_OPTIONS[key]: list(value) for key, value in lists.items() if value is not None},
    }
    spec.update({key: value for key, value in given_values.items() if value is not None})
    base, axes, project, name, devices = build_grid(spec)
    device_list = sweep.parse_devices(devices)
    study = {"search": opts.search, "trials": opts.trials, "storage": opts.storage, "shared_cache": opts.shared_cache}
    from tledge.training.sweep_study import check_storage

    check_storage(opts.storage)
    sweep_dir, cells = sweep.start_sweep(base, axes, project, name, device_list, study)
    if opts.search == "grid":
        click.echo(f"sweep {sweep_dir}: {len(cells)} cells: {', '.join(c.name for c in cells)}")
    else:
        click.echo(f"sweep {sweep_dir}: {opts.search} search, {opts.trials or len(cells)} trials over "
                   f"{len(cells)} cells")
    _exit(_run(sweep, cells, sweep_dir, device_list))


def _need_optuna() -> None:
    """The study needs optuna: say so in one line (exit 2) before anything is written."""
    require("optuna", "sweep", "tledge sweep")


def _run(sweep, cells, sweep_dir: Path, devices: list[str]) -> list[dict]:
    """This process as the study's one worker, or (two or more devices) one worker process per device."""
    return sweep.run_study_sweep(sweep_dir, devices=devices)


def _exit(rows: list[dict]) -> None:
    """130 when interrupted (143 by SIGTERM), 1 when a cell failed (results are written either way), else 0."""
    statuses = {row["status"] for row in rows}
    if statuses & {"interrupted", "pending", "started", "incomplete"}:
        raise Interrupted("the sweep stopped before every cell finished (the resume command is above)")
    if "failed" in statuses:
        sys.exit(1)


COMMANDS = [sweep_command]
