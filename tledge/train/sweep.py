"""Experiment grids: every combination of a few training options, each an ordinary tledge run, then one
comparison table (results.csv/.md/.json) and plot (results.png) over all of them.

    cells = expand_grid(TrainConfig(data="flowers", epochs=25), {"model": ["resnet18", "alexnet"],
                                                                 "freeze": ["none", "all"]})
    validate_cells(cells)                  # bad names, bad freeze, too-small input: before any training
    sweep_dir = start_sweep(base, axes, "runs")             # runs/sweep, runs/sweep2 … with sweep.json
    rows = run_sweep(cells, sweep_dir)                      # runs/sweepN/<cell>/ per cell

A sweep folder holds sweep.json (the grid), one run folder per cell (resnet18-freeze_all-sgd/ …, or a
k-fold run with fold1/ … foldK/) and the results files. Rerunning the same sweep (`resume_sweep`) skips
cells whose metrics.json (k-fold: kfold.json) exists, resumes a cell that has last.pt, and retries failed
ones. Every number in the results is read from the cells' own metrics.json / history.csv / kfold.json;
k-fold cells show mean ± sample std over their folds.

With several devices (`devices=["cuda:0", "cuda:1"]`, or `["cpu", "cpu"]`), cells run in parallel, one
per device, each in its own process (`python -m tledge.train.sweep SWEEP_DIR CELL DEVICE`) that writes its
output to <cell>/sweep.log.

Nothing here imports torch at import time; running cells does.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tledge.atomic import atomic_write_bytes
from tledge.errors import TledgeError
from tledge.table import format_table
from tledge.train import reports
from tledge.train.config import TrainConfig
from tledge.train.rundir import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, next_free_name

Log = Callable[[str], None]

SWEEP_FILE = "sweep.json"
KFOLD_FILE = "kfold.json"  # tledge.train.kfold.KFOLD_JSON (not imported: that module imports torch)
STATUS_FILE = "sweep_status.json"  # written by a worker process when its cell fails
WORKER_LOG = "sweep.log"
RESULT_FILES = ("results.csv", "results.md", "results.json", "results.png")

# Options a grid may vary, with their type. The order is also the order of name tokens and table columns.
AXIS_TYPES: dict[str, type] = {
    "model": str, "freeze": str, "optimizer": str, "lr": float, "epochs": int, "img_size": int,
    "batch_size": int, "augment": str, "head": str, "weights": str, "seed": int, "kfold": int,
    "dropout": float, "weight_decay": float, "momentum": float, "scheduler": str, "resize": str,
    "label_smoothing": float, "warmup_epochs": int, "patience": int,
}
# How a varying axis appears in a cell name: prefix + value ("" = the value alone).
NAME_PREFIX = {"model": "", "optimizer": "", "freeze": "freeze_", "lr": "lr", "epochs": "ep", "img_size": "px",
               "batch_size": "bs", "augment": "aug_", "head": "head_", "weights": "w_", "seed": "seed",
               "kfold": "kfold", "dropout": "drop", "weight_decay": "wd", "momentum": "mom",
               "scheduler": "sched_", "resize": "resize_", "label_smoothing": "ls", "warmup_epochs": "warm",
               "patience": "pat"}
AXIS_ALIASES = {"models": "model", "optimizers": "optimizer"}
RESIZE_MODES = ("stretch", "center_crop")

# The numbers every result row carries (k-fold rows: the mean over folds, and a <name>_std column).
METRICS = ("trainable_params", "total_params", "best_epoch", "epochs_run", "train_time_s", "train_loss",
           "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
CSV_COLUMNS = ("cell", "status", *AXIS_TYPES, "k", *METRICS, *(f"{m}_std" for m in METRICS), "run_dir", "error")
# results.md: (column title, row key, decimals); None = as is.
TABLE_METRICS = (("trainable", "trainable_params", None), ("best epoch", "best_epoch", 1),
                 ("time s", "train_time_s", 1), ("train loss", "train_loss", 4), ("train acc", "train_acc", 4),
                 ("val loss", "val_loss", 4), ("val acc", "val_acc", 4), ("test loss", "test_loss", 4),
                 ("test acc", "test_acc", 4))
TABLE_LEGEND = ("train loss/acc: last epoch; val loss/acc: best epoch (the weights tested); test: best.pt on "
                "the test split; time: training + validation seconds. k-fold cells: mean ± std over folds.")


@dataclass
class Cell:
    """One grid point: a deterministic, filesystem-safe name and the TrainConfig it trains."""

    name: str
    config: TrainConfig
    values: dict[str, Any] = field(default_factory=dict)  # axis → this cell's value


# --------------------------------------------------------------------------------------------- the grid
def normalize_axes(axes: dict[str, Any]) -> dict[str, list]:
    """Axis names to TrainConfig fields (`img-size`/`models` → img_size/model), values to lists."""
    result: dict[str, list] = {}
    for key, values in axes.items():
        name = AXIS_ALIASES.get(key, key).replace("-", "_")
        if name not in AXIS_TYPES:
            raise TledgeError(f"cannot sweep over {key!r}; grid axes are: {', '.join(AXIS_TYPES)}")
        if name in result:
            raise TledgeError(f"grid axis {name!r} is given twice")
        result[name] = list(values) if isinstance(values, (list, tuple)) else [values]
    return result


def coerce(axis: str, value: Any) -> Any:
    """A grid value (text from the command line, or JSON) as the option's type; bad ones are one-line errors."""
    kind = AXIS_TYPES[axis]
    if axis == "lr" and (value is None or str(value).strip().lower() in ("", "none", "default")):
        return None  # the optimizer's usual rate
    try:
        if kind is int:
            number = float(value)
            if number != int(number) or isinstance(value, bool):
                raise ValueError
            return int(number)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        text = str(value).strip()
        if not text:
            raise ValueError
        return text
    except (TypeError, ValueError):
        raise TledgeError(f"bad {axis} value {value!r} in the grid; expected {kind.__name__}") from None


def _token(axis: str, value: Any) -> str:
    if value is None:
        text = "default"
    elif isinstance(value, float):
        text = format(value, "g")
    elif axis == "weights" and value not in ("imagenet", "none"):
        text = Path(value).stem
    else:
        text = str(value).replace(":", "")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", NAME_PREFIX.get(axis, axis) + text)


def expand_grid(base: TrainConfig, axes: dict[str, Sequence]) -> list[Cell]:
    """Every combination of the axes' values applied to `base`, first axis slowest. A cell's name is the
    model, then `<axis token>` for each axis with more than one value, joined by '-'
    (resnet18-freeze_stages2-adam); axes with one value just set that option."""
    axes = normalize_axes(axes)
    grid: dict[str, list] = {}
    for axis, values in axes.items():
        if not values:
            raise TledgeError(f"grid axis {axis!r} has no values")
        coerced = [coerce(axis, v) for v in values]
        if len(set(map(repr, coerced))) != len(coerced):
            raise TledgeError(f"grid axis {axis!r} repeats a value: {values}")
        grid[axis] = coerced
    varying = [a for a in grid if len(grid[a]) > 1 and a != "model"]
    combos: list[dict] = [{}]
    for axis, values in grid.items():
        combos = [{**combo, axis: v} for combo in combos for v in values]
    cells, seen = [], {}
    for combo in combos:
        config = dataclasses.replace(base, **combo)
        name = "-".join([_token("model", config.model)] + [_token(a, combo[a]) for a in varying])
        if name in seen:
            raise TledgeError(f"grid cells {seen[name]} and {combo} would share the folder name {name!r}")
        seen[name] = combo
        cells.append(Cell(name, config, {a: combo[a] for a in grid}))
    return cells


def validate_cells(cells: Sequence[Cell]) -> None:
    """Catch what would fail in training before any cell trains: unknown model/optimizer/head/scheduler/
    augmentation, bad freeze syntax or depth, a weights file that is not there, an input size the model
    cannot take (checked by a forward pass on the meta device: no memory, no weights)."""
    if not cells:
        raise TledgeError("the grid has no cells")
    checked: set = set()
    for cell in cells:
        c = cell.config
        where = f"cell {cell.name}: "
        try:
            _check_options(c)
            key = (c.model, c.freeze, c.img_size, c.head, tuple(sorted(c.arch_kwargs.items())))
            if key not in checked:
                _check_model(c)
                checked.add(key)
        except TledgeError as exc:
            raise TledgeError(where + str(exc)) from None
    data = Path(cells[0].config.data)
    if not data.is_dir():
        raise TledgeError(f"data folder {data} not found")


def _check_options(c: TrainConfig) -> None:
    from tledge.train.augment import LEVELS
    from tledge.train.backbones import HEADS, get_spec
    from tledge.train.freeze import parse_policy
    from tledge.train.optim import OPTIMIZERS, SCHEDULERS

    get_spec(c.model)
    parse_policy(c.freeze)
    checks = [
        (c.optimizer in OPTIMIZERS, f"unknown optimizer {c.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}"),
        (c.scheduler in SCHEDULERS, f"unknown scheduler {c.scheduler!r}; expected one of {', '.join(SCHEDULERS)}"),
        (c.head in HEADS, f"unknown head {c.head!r}; expected one of {', '.join(HEADS)}"),
        (c.augment in LEVELS, f"unknown augmentation {c.augment!r}; expected one of {', '.join(LEVELS)}"),
        (c.resize in RESIZE_MODES, f"unknown resize {c.resize!r}; expected one of {', '.join(RESIZE_MODES)}"),
        (c.epochs >= 1, f"epochs must be at least 1, got {c.epochs}"),
        (c.batch_size >= 1, f"batch size must be at least 1, got {c.batch_size}"),
        (c.img_size >= 8, f"image size must be at least 8 px, got {c.img_size}"),
        (c.lr is None or c.lr > 0, f"lr must be positive, got {c.lr}"),
        (c.kfold == 0 or c.kfold >= 2, f"kfold must be 0 (off) or at least 2, got {c.kfold}"),
        (c.weights in ("imagenet", "none") or Path(c.weights).is_file(),
         f"weights file {c.weights!r} not found (expected imagenet, none or a file)"),
    ]
    for ok, message in checks:
        if not ok:
            raise TledgeError(message)


def _check_model(c: TrainConfig) -> None:
    """Build the model on the meta device, apply the freeze policy, push one image of img_size through."""
    import torch

    from tledge.train.backbones import create_model
    from tledge.train.freeze import apply_freeze

    with torch.device("meta"):
        model = create_model(c.model, 2, "none", c.head, c.dropout, **c.arch_kwargs)
        apply_freeze(model, c.freeze)
        try:
            model.eval()(torch.empty(1, 3, c.img_size, c.img_size))
        except (RuntimeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TledgeError(f"{c.model} cannot take {c.img_size} px images ({reason}); "
                              f"use a larger img_size") from None


# --------------------------------------------------------------------------------------------- sweep folder
def new_sweep_dir(project: str | Path, name: str | None = None) -> Path:
    """runs/sweep, runs/sweep2, … or runs/NAME (which must not hold a sweep yet)."""
    project = Path(project)
    if name:
        path = project / name
        if (path / SWEEP_FILE).is_file():
            raise TledgeError(f"{path} already holds a sweep; resume it with: tledge sweep --resume {path}")
    else:
        path = project / next_free_name(project, "sweep")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_grid(sweep_dir: Path, base: TrainConfig, axes: dict, devices: Sequence[str] | None = None) -> Path:
    return reports.write_json(Path(sweep_dir) / SWEEP_FILE, {
        "base": base.to_dict(), "axes": normalize_axes(axes), "devices": list(devices or []),
        "cells": [c.name for c in expand_grid(base, axes)],
    })


def load_grid(sweep_dir: str | Path) -> tuple[TrainConfig, dict, list[str]]:
    """(base config, axes, devices) from a sweep folder's sweep.json."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise TledgeError(f"{sweep_dir} is not a sweep folder (no {SWEEP_FILE})")
    grid = reports.read_json(path)
    return TrainConfig.from_dict(grid["base"]), grid["axes"], list(grid.get("devices") or [])


def sweep_cells(sweep_dir: str | Path) -> list[Cell]:
    """The cells of a saved sweep, each set to train in its folder under `sweep_dir`."""
    base, axes, _ = load_grid(sweep_dir)
    return expand_grid(dataclasses.replace(base, project=str(sweep_dir)), axes)


def start_sweep(base: TrainConfig, axes: dict, project: str | Path = "runs", name: str | None = None,
                devices: Sequence[str] | None = None) -> tuple[Path, list[Cell]]:
    """Validate the grid, make the sweep folder and save sweep.json; nothing trains yet."""
    from tledge.paths import check_name_inside, check_output_dir

    check_output_dir(project, "--project")
    check_name_inside(project, name)
    cells = expand_grid(base, axes)
    validate_cells(cells)
    sweep_dir = new_sweep_dir(project, name)
    base = dataclasses.replace(base, project=str(sweep_dir))
    save_grid(sweep_dir, base, axes, devices)
    return sweep_dir, expand_grid(base, axes)


# --------------------------------------------------------------------------------------------- running
def parse_devices(devices: str | Sequence[str] | None) -> list[str]:
    """'0,1' / ['cuda:0', 'cuda:1'] / 'cpu,cpu' → ['cuda:0', 'cuda:1'] / ['cpu', 'cpu']; None/'' → []."""
    if not devices:
        return []
    items = devices.split(",") if isinstance(devices, str) else [str(d) for d in devices]
    result = []
    for item in (i.strip().lower() for i in items):
        if item.isdigit():
            item = f"cuda:{item}"
        if item not in ("cpu", "cuda") and not re.fullmatch(r"cuda:\d+", item):
            raise TledgeError(f"bad device {item!r} in --devices; expected GPU indices (0,1), cuda:N or cpu")
        result.append(item)
    check_devices_exist(result)
    return result


def check_devices_exist(devices: Sequence[str]) -> None:
    """Every cuda device named must be one torch can see, before any cell starts."""
    wanted = [d for d in devices if d.startswith("cuda")]
    if not wanted:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device in wanted:
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            seen = f"GPUs 0-{count - 1}" if count else "no CUDA GPU"
            raise TledgeError(f"--devices names {device}, but torch sees {seen}; use existing GPU indices or cpu")


def cell_config(cell: Cell, sweep_dir: Path, device: str | None = None) -> TrainConfig:
    changes: dict[str, Any] = {"project": str(sweep_dir), "name": cell.name, "exist_ok": True}
    if device is not None:
        changes["device"] = device
    return dataclasses.replace(cell.config, **changes)


def cell_state(cell: Cell, cell_dir: Path) -> str:
    """'done' (results there), 'started' (resumable), or 'new'."""
    if cell.config.kfold:
        if (cell_dir / KFOLD_FILE).is_file():
            return "done"
        return "started" if (cell_dir / "splits.json").is_file() and (cell_dir / CONFIG_FILE).is_file() else "new"
    if (cell_dir / METRICS_FILE).is_file():
        return "done"
    return "started" if (cell_dir / "last.pt").is_file() else "new"


def run_cell(cell: Cell, sweep_dir: Path, log: Log = print, device: str | None = None,
             splits_cache: dict | None = None) -> str:
    """Train one cell in sweep_dir/<name> (or read it back, or resume it). Returns 'done' or 'interrupted'.
    Errors propagate."""
    from tledge.train.fit import train_run
    from tledge.train.kfold import run_kfold

    cell_dir = Path(sweep_dir) / cell.name
    config = cell_config(cell, Path(sweep_dir), device)
    state = cell_state(cell, cell_dir)
    if state == "done":
        log(f"{cell.name}: already finished, skipping")
        return "done"
    if config.kfold:
        if state == "started":
            log(f"{cell.name}: resuming k-fold run")
        outcome = run_kfold(config, log, resume_dir=cell_dir if state == "started" else None)
        return "interrupted" if outcome.get("interrupted") else "done"
    if state == "started":
        log(f"{cell.name}: resuming from {cell_dir / 'last.pt'}")
        result = train_run(config, run_dir=cell_dir, resume=True, log=log)
    else:
        splits, fingerprint = _shared_splits(config, splits_cache, log)
        result = train_run(config, run_dir=cell_dir, splits=splits, fingerprint=fingerprint, log=log)
    return "interrupted" if result.interrupted else "done"


def _shared_splits(config: TrainConfig, cache: dict | None, log: Log):
    """Scan the data once per (data, split, seed) and share the split between cells: every cell of a sweep
    sees the same images (the same seed gives the same split anyway; this only saves the scan)."""
    if cache is None:
        return None, ""
    from tledge.train.data import build_splits

    key = (config.data, tuple(config.split), config.seed)
    if key not in cache:
        splits, report = build_splits(config.data, tuple(config.split), config.seed)
        for line in report.summary_lines():
            log(line)
        cache[key] = (splits, report.fingerprint)
    return cache[key]


def run_sweep(cells: Sequence[Cell], sweep_dir: str | Path, log: Log = print,
              devices: Sequence[str] | None = None) -> list[dict]:
    """Run every cell (skipping finished ones, resuming started ones), then write the results files.

    A cell that raises is recorded as failed with its reason and the sweep goes on; an interrupted
    cell (Ctrl-C) stops the sweep, with the results so far written. `devices` with two or more entries
    runs cells in parallel worker processes, one per device. Returns the result rows (see `cell_result`).
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    devices = parse_devices(devices)
    if len(devices) > 1:
        outcomes = _run_parallel(cells, sweep_dir, list(devices), log)
    else:
        outcomes = _run_serial(cells, sweep_dir, devices[0] if devices else None, log)
    rows = [cell_result(cell, sweep_dir / cell.name, *outcomes.get(cell.name, ("pending", None))) for cell in cells]
    write_results(rows, sweep_dir)
    _log_summary(rows, sweep_dir, log)
    return rows


def _run_serial(cells, sweep_dir: Path, device: str | None, log: Log) -> dict[str, tuple[str, str | None]]:
    outcomes: dict[str, tuple[str, str | None]] = {}
    cache: dict = {}
    for index, cell in enumerate(cells, 1):
        log(f"\n=== sweep cell {index}/{len(cells)}: {cell.name} ===")
        try:
            status = run_cell(cell, sweep_dir, log, device, cache)
        except KeyboardInterrupt:
            status = "interrupted"
        except Exception as exc:  # one bad cell (OOM, a bad file) must not sink the rest of the grid
            reason = _reason(exc)
            log(f"{cell.name}: FAILED: {reason}")
            if not isinstance(exc, TledgeError):
                log(traceback.format_exc().rstrip())
            outcomes[cell.name] = ("failed", reason)
            continue
        outcomes[cell.name] = (status, None)
        if status == "interrupted":
            log(f"sweep interrupted in {cell.name}; resume with: tledge sweep --resume {sweep_dir}")
            break
        # after each cell, so a killed sweep still leaves a table of what finished
        write_results([cell_result(c, sweep_dir / c.name, *outcomes.get(c.name, ("pending", None)))
                       for c in cells], sweep_dir, plot=False)
    return outcomes


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, TledgeError) else f"{type(exc).__name__}: {text}".rstrip(": ")


@dataclass
class _Job:
    cell: Cell
    device: str
    process: subprocess.Popen
    log_file: Any
    started: float


def worker_command(sweep_dir: Path, cell: Cell, device: str) -> tuple[list[str], dict]:
    """The command and environment that train one cell in its own process. A CUDA device is given to the
    process as its only visible GPU (so no process touches another's GPU), then used as 'cuda'."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    match = re.fullmatch(r"(?:cuda:)?(\d+)", device)
    if match:
        env["CUDA_VISIBLE_DEVICES"] = match.group(1)
        device = "cuda"
    return [sys.executable, "-m", "tledge.train.sweep", str(sweep_dir), cell.name, device], env


def _run_parallel(cells, sweep_dir: Path, devices: list[str], log: Log) -> dict[str, tuple[str, str | None]]:
    outcomes: dict[str, tuple[str, str | None]] = {}
    queue = []
    for cell in cells:
        if cell_state(cell, sweep_dir / cell.name) == "done":
            log(f"{cell.name}: already finished, skipping")
            outcomes[cell.name] = ("done", None)
        else:
            queue.append(cell)
    cpu_slots = sum(1 for d in devices if d == "cpu")
    threads = max(1, (os.cpu_count() or 1) // max(cpu_slots, 1))
    free = list(devices)
    running: list[_Job] = []
    try:
        while queue or running:
            while queue and free:
                cell, device = queue.pop(0), free.pop(0)
                running.append(_start_job(cell, device, sweep_dir, threads, log))
            time.sleep(0.2)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                free.append(job.device)
                outcomes[job.cell.name] = _finish_job(job, sweep_dir, log)
                if outcomes[job.cell.name][0] == "interrupted":
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        log(f"sweep interrupted: stopping {len(running)} running cell(s); "
            f"resume with: tledge sweep --resume {sweep_dir}")
        for job in running:
            _stop_job(job)
            outcomes[job.cell.name] = ("interrupted", None)
    return outcomes


def _start_job(cell: Cell, device: str, sweep_dir: Path, threads: int, log: Log) -> _Job:
    cell_dir = sweep_dir / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / STATUS_FILE).unlink(missing_ok=True)
    command, env = worker_command(sweep_dir, cell, device)
    if device == "cpu":
        env.setdefault("OMP_NUM_THREADS", str(threads))
    log_file = open(cell_dir / WORKER_LOG, "a", encoding="utf-8")
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    log(f"{cell.name}: started on {device} (pid {process.pid}, log {cell_dir / WORKER_LOG})")
    return _Job(cell, device, process, log_file, time.perf_counter())


def _finish_job(job: _Job, sweep_dir: Path, log: Log) -> tuple[str, str | None]:
    job.log_file.close()
    cell_dir = sweep_dir / job.cell.name
    code = job.process.returncode
    seconds = time.perf_counter() - job.started
    if code == 0 and cell_state(job.cell, cell_dir) == "done":
        log(f"{job.cell.name}: finished on {job.device} in {seconds:.0f} s")
        return "done", None
    if code in (130, -signal.SIGINT):
        return "interrupted", None
    status = cell_dir / STATUS_FILE
    reason = reports.read_json(status).get("error") if status.is_file() else None
    reason = reason or f"worker exited with code {code}: {_last_line(cell_dir / WORKER_LOG)}"
    log(f"{job.cell.name}: FAILED on {job.device}: {reason} (log: {cell_dir / WORKER_LOG})")
    return "failed", reason


def _stop_job(job: _Job) -> None:
    """Ctrl-C the worker (it saves last.pt and exits), then kill it if it does not within 60 s."""
    if job.process.poll() is None:
        job.process.send_signal(signal.SIGINT)
        try:
            job.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
    job.log_file.close()


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def worker_main(argv: Sequence[str]) -> int:
    """`python -m tledge.train.sweep SWEEP_DIR CELL DEVICE`: train one cell of a saved sweep."""
    if len(argv) != 3:
        print("usage: python -m tledge.train.sweep SWEEP_DIR CELL DEVICE", file=sys.stderr)
        return 2
    sweep_dir, name, device = Path(argv[0]), argv[1], argv[2]
    cells = {c.name: c for c in sweep_cells(sweep_dir)}
    if name not in cells:
        print(f"error: {sweep_dir} has no cell {name!r}", file=sys.stderr)
        return 2
    try:
        status = run_cell(cells[name], sweep_dir, print, device)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        traceback.print_exc()
        reports.write_json(sweep_dir / name / STATUS_FILE, {"status": "failed", "error": _reason(exc)})
        return 1
    return 130 if status == "interrupted" else 0


# --------------------------------------------------------------------------------------------- results
def _run_numbers(run_dir: Path) -> dict:
    """One run's numbers, read from its metrics.json and history.csv."""
    metrics = reports.read_json(run_dir / METRICS_FILE)
    history = reports.read_history_csv(run_dir / HISTORY_FILE) if (run_dir / HISTORY_FILE).is_file() else []
    best_epoch = metrics.get("best_epoch")
    best = history[best_epoch - 1] if history and best_epoch and best_epoch <= len(history) else {}
    last = history[-1] if history else {}
    return {
        "trainable_params": metrics.get("trainable_params"),
        "total_params": metrics.get("total_params"),
        "best_epoch": best_epoch,
        "epochs_run": metrics.get("epochs_run"),
        "train_time_s": metrics.get("train_time_s"),
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "val_loss": best.get("val_loss"),
        "val_acc": metrics.get("best_val_acc"),
        "test_loss": metrics.get("loss"),
        "test_acc": metrics.get("accuracy"),
    }


def _mean_std(values: list) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1, as kfold.json reports it); None where there is nothing to average."""
    numbers = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not numbers:
        return None, None
    mean = sum(numbers) / len(numbers)
    if len(numbers) < 2:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))


def cell_result(cell: Cell, cell_dir: Path, status: str = "pending", error: str | None = None) -> dict:
    """One results row: the cell's options, then numbers read from its files. A cell whose results exist
    is 'done' whatever `status` says (e.g. finished by an earlier invocation)."""
    from tledge.train.optim import DEFAULT_LR

    row: dict[str, Any] = {"cell": cell.name, "status": status}
    row.update({axis: getattr(cell.config, axis) for axis in AXIS_TYPES})
    if row["lr"] is None:  # the optimizer's usual rate, which is what the run used
        row["lr"] = DEFAULT_LR.get(cell.config.optimizer)
    row["k"] = cell.config.kfold or None
    row.update({m: None for m in METRICS})
    row.update({f"{m}_std": None for m in METRICS})
    row["run_dir"] = str(cell_dir)
    row["error"] = error
    if cell_state(cell, cell_dir) != "done":
        if status == "done":  # a run that finished without results (e.g. interrupted before epoch 1)
            row["status"] = "incomplete"
        elif status == "pending" and (cell_dir / "last.pt").is_file():
            row["status"] = "started"
        return row
    row["status"], row["error"] = "done", None
    if not cell.config.kfold:
        row.update(_run_numbers(cell_dir))
        return row
    kfold = reports.read_json(cell_dir / KFOLD_FILE)
    folds = [_run_numbers(cell_dir / f"fold{f['fold']}") for f in kfold["folds"]]
    row["k"] = len(folds)
    for metric in METRICS:
        row[metric], row[f"{metric}_std"] = _mean_std([f[metric] for f in folds])
    return row


def _csv_text(rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else (repr(row[k]) if isinstance(row[k], float) else row[k])
                         for k in CSV_COLUMNS})
    return buffer.getvalue()


def _shown_axes(rows: Sequence[dict]) -> list[str]:
    """Table columns for the options: model, freeze, optimizer, lr, epochs always; others when they vary."""
    always = ["model", "freeze", "optimizer", "lr", "epochs"]
    varying = [a for a in AXIS_TYPES if a not in always and len({repr(r.get(a)) for r in rows}) > 1]
    return always + varying


def _display(value: Any, std: Any, decimals: int | None) -> Any:
    if value is None:
        return None
    if decimals is None:
        return f"{int(round(value)):,}" if isinstance(value, (int, float)) else value
    if isinstance(value, int) and std is None:
        return value
    text = f"{value:.{decimals}f}"
    return text if std is None else f"{text} ± {std:.{decimals}f}"


def results_table(rows: Sequence[dict]) -> list[dict]:
    """Display rows for format_table: one per cell, numbers rounded, k-fold cells as 'mean ± std'."""
    axes = _shown_axes(rows)
    any_kfold = any(r.get("k") for r in rows)
    table = []
    for row in rows:
        shown: dict[str, Any] = {"cell": row["cell"]}
        for axis in axes:
            value = row.get(axis)
            shown[axis] = format(value, "g") if isinstance(value, float) else value
        if any_kfold:
            shown["folds"] = row.get("k")
        for title, key, decimals in TABLE_METRICS:
            shown[title] = _display(row.get(key), row.get(f"{key}_std"), decimals)
        shown["status"] = row["status"] if row["status"] == "done" else f"{row['status']}" + (
            f": {row['error']}" if row.get("error") else "")
        table.append(shown)
    return table


def write_results(rows: Sequence[dict], sweep_dir: str | Path, plot: bool = True) -> list[Path]:
    """results.csv (every number, exact), results.json, results.md (the study table) and results.png."""
    sweep_dir = Path(sweep_dir)
    atomic_write_bytes(sweep_dir / "results.csv", _csv_text(rows).encode("utf-8"))
    reports.write_json(sweep_dir / "results.json", {"sweep": str(sweep_dir), "columns": list(CSV_COLUMNS),
                                                    "cells": list(rows)})
    table = format_table(results_table(rows), markdown=True)
    text = f"# Sweep {sweep_dir.name}\n\n{table}\n\n{TABLE_LEGEND}\n"
    atomic_write_bytes(sweep_dir / "results.md", text.encode("utf-8"))
    written = [sweep_dir / name for name in RESULT_FILES[:3]]
    if plot:
        written.append(plot_results(rows, sweep_dir / "results.png", title=f"{sweep_dir.name}: {len(rows)} cells"))
    return written


def plot_results(rows: Sequence[dict], path: str | Path, title: str | None = None) -> Path:
    """A bar per cell: test accuracy (val accuracy when no cell has a test split), with ± std error bars
    for k-fold cells; a cell without results gets an empty slot labelled with its status."""
    plt = reports._pyplot()
    key = "test_acc" if any(r.get("test_acc") is not None for r in rows) else "val_acc"
    names = [r["cell"] for r in rows]
    values = [r.get(key) if r.get(key) is not None else 0.0 for r in rows]
    errors = [r.get(f"{key}_std") or 0.0 for r in rows] if any(r.get("k") for r in rows) else None
    colours = ["tab:blue" if r.get("k") else "tab:green" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 2.0), 4.5))
    try:
        positions = list(range(len(rows)))
        ax.bar(positions, values, yerr=errors, capsize=4, color=colours)
        for x, row, value in zip(positions, rows, values):
            label = f"{value:.3f}" if row.get(key) is not None else row["status"]
            ax.text(x, value + 0.01, label, ha="center", va="bottom", fontsize=8, rotation=90 if len(rows) > 12 else 0)
        ax.set_xticks(positions)
        ax.set_xticklabels(names, rotation=45 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center",
                           fontsize=8)
        ax.set_ylabel(key.replace("_", " ") + (" (mean ± std over folds)" if any(r.get("k") for r in rows) else ""))
        ax.set_ylim(0, 1.1)
        ax.grid(axis="y", alpha=0.3)
        if title:
            ax.set_title(title)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return reports._save_figure(fig, path)


def _log_summary(rows: Sequence[dict], sweep_dir: Path, log: Log) -> None:
    log("\n" + format_table(results_table(rows)))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        log(f"{len(failed)} of {len(rows)} cells failed: " + "; ".join(f"{r['cell']}: {r['error']}" for r in failed))
    log(f"results in {sweep_dir} (results.md, results.csv, results.json, results.png)")


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
