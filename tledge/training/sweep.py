"""Experiment grids: every combination of a few training options, each an ordinary tledge run, then one
comparison table (results.csv/.md/.json) and plot (results.png) over all of them.

    cells = expand_grid(TrainConfig(data="flowers", epochs=25), {"model": ["resnet18", "alexnet"],
                                                                 "freeze": ["none", "all"]})
    validate_cells(cells)                  # bad names, bad freeze, too-small input: before any training
    sweep_dir = start_sweep(base, axes, "runs")             # runs/sweep, runs/sweep2 … with sweep.json
    rows = run_study_sweep(sweep_dir)                       # runs/sweepN/<cell>/ per cell

The grid is in tledge.training.sweep_grid, the results table in tledge.training.sweep_results, the Optuna study
(grid sampler or TPE, the trials, the chosen cell) in tledge.training.sweep_study; this module keeps the sweep
folder and the running of cells by the study's workers.

A sweep folder holds sweep.json (the grid and the study's options), one run folder per cell
(resnet18-freeze_all-sgd/ …, or a k-fold run with fold1/ … foldK/), study.db, trunk_cache/ (frozen-prefix
outputs that cells with the same frozen part share) and the results files. Rerunning the same sweep
(`tledge sweep --resume`) skips finished cells, resumes a cell that has last.pt, and retries failed ones.
Every number in the results is read from the cells' own metrics.json / history.csv / kfold.json; k-fold
cells show mean ± sample std over their folds.

With several devices (`devices=["cuda:0", "cuda:1"]`, or `["cpu", "cpu"]`), one study worker process runs
per device (`python -m tledge.training.sweep SWEEP_DIR DEVICE`, output in SWEEP_DIR/workers/), all taking
trials from the same study, as workers on other machines do with a shared --storage.

Nothing here imports torch at import time; running cells does.
"""

from __future__ import annotations

import logging
import dataclasses
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from tledge.errors import TledgeError
from tledge.logs import log_result
from tledge.training import reports
from tledge.training.config import TrainConfig
from tledge.devices import device_problem
from tledge.training.rundir import next_free_name
from tledge.training.tracking import TRACKING_FILE, Tracker
from tledge.training.sweep_grid import (  # noqa: F401 - the grid's public names, re-exported
    AXES, AXIS_ALIASES, AXIS_TYPES, NAME_PREFIX, Cell, coerce, expand_grid, normalize_axes, validate_cells)
from tledge.training.sweep_results import (  # noqa: F401 - the results' public names, re-exported
    CSV_COLUMNS, KFOLD_FILE, METRICS, RESULT_FILES, TABLE_LEGEND, TABLE_METRICS, _log_summary, cell_result,
    cell_state, plot_results, results_table, write_results)

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
WORKER_LOGS = "workers"  # SWEEP_DIR/workers/worker1-cuda0.log …: the output of --devices' worker processes

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


def save_grid(sweep_dir: Path, base: TrainConfig, axes: dict, devices: Sequence[str] | None = None,
              study: dict | None = None) -> Path:
    """sweep.json: the grid, the devices, and the study (search: grid or tpe, trials, storage URL or null)."""
    return reports.write_json(Path(sweep_dir) / SWEEP_FILE, {
        "base": base.to_dict(), "axes": normalize_axes(axes), "devices": list(devices or []),
        "cells": [c.name for c in expand_grid(base, axes)], "study": study or {},
    })


def load_study_spec(sweep_dir: str | Path) -> dict:
    """sweep.json's study: {"search": "grid" | "tpe", "trials": N | None, "storage": URL | None,
    "shared_cache": whether cells share frozen-prefix outputs (True unless --no-shared-cache)}."""
    spec = reports.read_json(Path(sweep_dir) / SWEEP_FILE).get("study") or {}
    return {"search": spec.get("search", "grid"), "trials": spec.get("trials"), "storage": spec.get("storage"),
            "shared_cache": bool(spec.get("shared_cache", True))}


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
                devices: Sequence[str] | None = None, study: dict | None = None) -> tuple[Path, list[Cell]]:
    """Validate the grid, make the sweep folder and save sweep.json; nothing trains yet."""
    from tledge.paths import check_name_inside, check_output_dir, check_outputs_apart

    check_output_dir(project, "--project")
    check_outputs_apart([("--project", project)], [("the DATA folder", base.data)])
    check_name_inside(project, name)
    cells = expand_grid(base, axes)
    validate_cells(cells)
    sweep_dir = new_sweep_dir(project, name)
    base = dataclasses.replace(base, project=str(sweep_dir))
    save_grid(sweep_dir, base, axes, devices, study)
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
        if item == "auto" or device_problem(item):  # --device's rule, without auto (a cell needs one device)
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
        visible_device(index, os.environ.get("CUDA_VISIBLE_DEVICES"))  # maps, or says why not, before any cell


def cell_config(cell: Cell, sweep_dir: Path, device: str | None = None) -> TrainConfig:
    changes: dict[str, Any] = {"project": str(sweep_dir), "name": cell.name, "exist_ok": True}
    if device is not None:
        changes["device"] = device
    return dataclasses.replace(cell.config, **changes)


def run_cell(cell: Cell, sweep_dir: Path, device: str | None = None,
             splits_cache: dict | None = None, tracker: Tracker | None = None,
             on_epoch_end: Callable[[int, dict], None] | None = None, feature_cache: Path | None = None) -> str:
    """Train one cell in sweep_dir/<name> (or read it back, or resume it). Returns 'done' or 'interrupted'.
    Errors propagate. `tracker`: the sweep's records, of which the cell's are a child. `on_epoch_end`:
    called with each epoch's history row (a study's trial reports val_acc there; k-fold cells do not).
    `feature_cache`: the folder where cells with the same frozen part share its cached outputs."""
    from tledge.training.fit import train_run
    from tledge.training.kfold import run_kfold

    cell_dir = Path(sweep_dir) / cell.name
    config = cell_config(cell, Path(sweep_dir), device)
    state = cell_state(cell, cell_dir)
    if state == "done":
        log.info(f"{cell.name}: already finished, skipping")
        return "done"
    if config.kfold:
        if state == "started":
            log.info(f"{cell.name}: resuming k-fold run")
        outcome = run_kfold(config, resume_dir=cell_dir if state == "started" else None,
                            parent_tracker=tracker)
        return "interrupted" if outcome.get("interrupted") else "done"
    if state == "started":
        log.info(f"{cell.name}: resuming from {cell_dir / 'last.pt'}")
        result = train_run(config, run_dir=cell_dir, resume=True, parent_tracker=tracker,
                           on_epoch_end=on_epoch_end, feature_cache=feature_cache)
    else:
        splits, fingerprint = _shared_splits(config, splits_cache)
        result = train_run(config, run_dir=cell_dir, splits=splits, fingerprint=fingerprint,
                           parent_tracker=tracker, on_epoch_end=on_epoch_end, feature_cache=feature_cache)
    return "interrupted" if result.interrupted else "done"


def _shared_splits(config: TrainConfig, cache: dict | None):
    """Scan the data once per (data, split, seed) and share the split between cells: every cell of a sweep
    sees the same images (the same seed gives the same split anyway; this only saves the scan)."""
    if cache is None:
        return None, ""
    from tledge.datasets.folders import build_splits

    key = (config.data, tuple(config.split), config.seed)
    if key not in cache:
        splits, report = build_splits(config.data, tuple(config.split), config.seed)
        for line in report.summary_lines():
            log.info(line)
        cache[key] = (splits, report.fingerprint)
    return cache[key]


def feature_cache_dir(sweep_dir: str | Path) -> Path | None:
    """SWEEP_DIR/trunk_cache, unless the sweep was started with --no-shared-cache."""
    from tledge.training.trunk_cache import FOLDER

    return Path(sweep_dir) / FOLDER if load_study_spec(sweep_dir)["shared_cache"] else None


def run_study_sweep(sweep_dir: str | Path, device: str | None = None,
                    devices: Sequence[str] | None = None) -> list[dict]:
    """Run the sweep folder's study (tledge.training.sweep_study) until the grid or the trial budget is done,
    then write the results over every cell so far, with the cell chosen on val. One worker in this process,
    on `device`; or, with two or more `devices`, one worker process per device against the same study."""
    from tledge.training import sweep_study

    sweep_dir = Path(sweep_dir)
    spec = load_study_spec(sweep_dir)
    cells = sweep_cells(sweep_dir)
    devices = parse_devices(devices)
    sweep_study.load_study(sweep_dir, cells, spec["search"], spec["storage"])  # a bad storage: before the tracker
    tracker = _open_sweep_tracker(cells, sweep_dir)
    try:
        if len(devices) > 1:
            outcomes = _run_device_workers(sweep_dir, devices)
        else:
            outcomes = _study_worker(sweep_dir, cells, devices[0] if devices else device, tracker)
    except BaseException:
        tracker.close("KILLED")
        raise
    rows = sweep_study.study_rows(sweep_dir, cells, spec["search"], spec["storage"], outcomes)
    best = sweep_study.mark_best(rows)
    write_results(rows, sweep_dir, best=best)
    _log_summary(rows, sweep_dir)
    log_result(log, sweep_study.summary(best))
    files = [sweep_dir / name for name in ("results.csv", "results.md", "results.json", SWEEP_FILE)]
    tracker.log_final({}, sweep_dir, files)
    stopped = {row["status"] for row in rows} & {"interrupted", "pending", "started", "incomplete"}
    tracker.close("KILLED" if stopped else "FINISHED", announce=True)
    return rows


def _study_worker(sweep_dir: Path, cells: Sequence[Cell], device: str | None,
                  tracker: Tracker | None) -> dict[str, tuple[str, str | None]]:
    """This process as one worker of the sweep's study: take trials until none is left."""
    from functools import partial

    from tledge.training import sweep_study

    spec = load_study_spec(sweep_dir)
    _, axes, _ = load_grid(sweep_dir)
    runner = partial(run_cell, feature_cache=feature_cache_dir(sweep_dir))
    return sweep_study.run_worker(sweep_dir, cells, normalize_axes(axes), search=spec["search"],
                                  trials=spec["trials"], storage=spec["storage"], device=device,
                                  tracker=tracker, run_cell=runner, reason_of=_reason)


def _open_sweep_tracker(cells: Sequence[Cell], sweep_dir: Path) -> Tracker:
    """The sweep's own records (the parent of every cell's), when its cells are tracked: the base options
    with each grid axis as its comma list."""
    names = cells[0].config.track if cells else ()
    resumed = any(cell_state(cell, sweep_dir / cell.name) != "new" for cell in cells)
    tracker = Tracker.open(names, sweep_dir, resume=resumed)
    if tracker.active and (sweep_dir / SWEEP_FILE).is_file():
        base, axes, _ = load_grid(sweep_dir)
        tracker.log_params({**base.to_dict(), **axes, "cells": len(cells)})
    return tracker


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, TledgeError) else f"{type(exc).__name__}: {text}".rstrip(": ")


# --------------------------------------------------------------------------------------------- one worker per device
def visible_device(index: int, parent_visible: str | None) -> str:
    """The CUDA_VISIBLE_DEVICES entry for the parent's GPU `index`. --devices indices are the parent's view
    (torch numbers the GPUs it sees from 0, and check_devices_exist counts them), so with the parent at
    "2,3" its cuda:0 is physical GPU 2: the child gets "2", not "0". Entries may be indices, GPU-UUIDs or
    MIG ids; they are passed on as written."""
    if parent_visible is None:
        return str(index)
    visible = [item.strip() for item in parent_visible.split(",") if item.strip()]
    if index >= len(visible):
        raise TledgeError(f"--devices names cuda:{index}, but CUDA_VISIBLE_DEVICES={parent_visible!r} makes "
                          f"{len(visible)} GPU(s) visible; use indices 0-{len(visible) - 1}" if visible else
                          f"--devices names cuda:{index}, but CUDA_VISIBLE_DEVICES={parent_visible!r} hides every GPU")
    return visible[index]


def worker_command(sweep_dir: Path, device: str, threads: int | None = None) -> tuple[list[str], dict]:
    """The command and environment of one study worker pinned to `device`. A CUDA device is given to the
    process as its only visible GPU (so no worker touches another's GPU), then used as 'cuda'; a CPU worker
    gets `threads` threads (the cores shared between the CPU workers)."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    match = re.fullmatch(r"(?:cuda:)?(\d+)", device)
    if match:
        env["CUDA_VISIBLE_DEVICES"] = visible_device(int(match.group(1)), os.environ.get("CUDA_VISIBLE_DEVICES"))
        device = "cuda"
    elif device == "cpu" and threads:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return [sys.executable, "-m", "tledge.training.sweep", str(sweep_dir), device], env


def _run_device_workers(sweep_dir: Path, devices: list[str]) -> dict[str, tuple[str, str | None]]:
    """One study worker process per device; wait for all. Their trials (and failures) are in the study; a
    worker stopped by Ctrl-C or SIGTERM leaves its cell interrupted (the next --resume continues it)."""
    cpu_workers = sum(1 for d in devices if d == "cpu")
    threads = max(1, (os.cpu_count() or 1) // max(cpu_workers, 1))
    logs = sweep_dir / WORKER_LOGS
    logs.mkdir(exist_ok=True)
    workers: list[tuple[str, subprocess.Popen, Any, Path]] = []
    try:
        for index, device in enumerate(devices, 1):
            command, env = worker_command(sweep_dir, device, threads)
            path = logs / f"worker{index}-{device.replace(':', '')}.log"
            handle = open(path, "a", encoding="utf-8")
            workers.append((device, subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env),
                            handle, path))
            log.info(f"worker {index} on {device}: pid {workers[-1][1].pid}, log {path}")
        interrupted = False
        for index, (device, process, handle, path) in enumerate(workers, 1):
            code = process.wait()
            handle.close()
            if code in (130, 143, -signal.SIGINT, -signal.SIGTERM):
                interrupted = True
            elif code != 0:
                log.warning(f"worker {index} on {device} exited with code {code}: {_last_line(path)} (log: {path})")
        if interrupted:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        log.warning(f"sweep interrupted: stopping {len(workers)} worker(s); resume with: tledge sweep --resume {sweep_dir}")
        for _, process, handle, _ in workers:
            _stop_worker(process)
            handle.close()
    return {}


def _stop_worker(process: subprocess.Popen) -> None:
    """Ctrl-C the worker (it saves last.pt and marks its trial), then kill it if it does not within 60 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def worker_main(argv: Sequence[str]) -> int:
    """`python -m tledge.training.sweep SWEEP_DIR DEVICE`: one study worker of a saved sweep, on DEVICE."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m tledge.training.sweep SWEEP_DIR DEVICE\n")
        return 2
    sweep_dir, device = Path(argv[0]), argv[1]
    cells = sweep_cells(sweep_dir)
    from tledge.logs import cli_logging
    from tledge.signals import sigterm_as_interrupt

    with cli_logging():  # the worker's log file (SWEEP/workers/) gets the lines `tledge train` prints
        # the sweep's records, opened by the parent process (tracking.json): the cells' are children of them
        tracked = (sweep_dir / TRACKING_FILE).is_file() and bool(cells)
        tracker = Tracker.open(cells[0].config.track, sweep_dir, resume=True) if tracked else None
        with sigterm_as_interrupt() as stop:  # a SIGTERM to every process (systemd's cgroup) saves last.pt too
            try:
                outcomes = _study_worker(sweep_dir, cells, device, tracker)
            except KeyboardInterrupt:
                return stop.exit_code or 130
    if any(status == "interrupted" for status, _ in outcomes.values()):
        return stop.exit_code or 130
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
