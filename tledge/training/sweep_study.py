"""Sweeps on Optuna: the grid as a GridSampler study, or a TPE search over the same grid values with a trial
budget and pruning on per-epoch validation accuracy. One trial trains one cell (an ordinary tledge run in
SWEEP_DIR/<cell>/), and its value is the cell's best validation accuracy: the test split never chooses.

The study lives in SWEEP_DIR/study.db (SQLite, nothing to start) unless sweep.json names a storage URL
(--storage postgresql://…), which lets `tledge sweep --resume SWEEP_DIR` run as one more worker of the same
study, on this machine or another; `--devices 0,1` starts one worker process per device. Workers on one
machine take trials under a file lock in the sweep folder, so no cell runs twice; a worker that dies
mid-trial (same host, its pid gone) has its trial marked failed by the next worker, which queues the cell
again and resumes it from its last.pt.

    run_study(sweep_dir)      # trains until the grid / trial budget is done, writes results.*, returns rows

optuna is imported only here (`pip install 'tledge[sweep]'`).
"""

from __future__ import annotations

import logging
import contextlib
import math
import os
import socket
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from tledge.errors import TledgeError, require
from tledge.training.sweep_grid import Cell
from tledge.training.sweep_results import cell_result

log = logging.getLogger(__name__)

STUDY_DB = "study.db"
LOCK_FILE = "study.lock"
STUDY_NAME = "tledge-sweep"
SEARCHES = ("grid", "tpe")


class _Pruned(Exception):
    """Raised from the epoch callback when the pruner stops a trial."""


def _optuna():
    return require("optuna", "sweep", "tledge sweep")


def storage_url(sweep_dir: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{Path(sweep_dir).resolve() / STUDY_DB}"


def study_name(sweep_dir: Path, storage: str | None) -> str:
    """SQLite in the folder: one study per file. A shared storage: named after the sweep folder."""
    return f"{STUDY_NAME}-{Path(sweep_dir).name}" if storage else STUDY_NAME


def load_study(sweep_dir: Path, cells: Sequence[Cell], search: str = "grid", storage: str | None = None,
               seed: int = 0, trials: int | None = None):
    """Create or join the sweep's study (the sampler is chosen per process; the trials are shared)."""
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if search == "grid":
        sampler = _grid_sampler(optuna)({"cell": [c.name for c in cells]}, seed=seed)
        pruner = optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(trials or len(cells)))
        pruner = search_pruner(optuna)
    try:
        with _locked(sweep_dir):  # two workers creating one SQLite file at once race in its schema setup
            return optuna.create_study(study_name=study_name(sweep_dir, storage), storage=storage_url(sweep_dir, storage),
                                       sampler=sampler, pruner=pruner, direction="maximize", load_if_exists=True)
    except Exception as exc:  # a bad URL, a missing driver, a server that does not answer
        raise TledgeError(f"cannot open the sweep study at {storage or sweep_dir}: "
                          f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None


def startup_trials(budget: int) -> int:
    """Random trials before TPE models the results: Optuna's 10, but a third of a smaller budget (at least 2),
    so that a laptop-sized budget of 6-9 trials is a search and not 6-9 random draws."""
    return min(10, max(2, budget // 3))


def search_pruner(optuna):
    """A search's pruner: stop a trial whose val accuracy at an epoch (after the first) is below the median
    of the earlier trials' at that epoch, once two trials have finished."""
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)


def _grid_sampler(optuna):
    """GridSampler without its after_trial, which calls study.stop() (only allowed inside optimize(); this
    module asks and tells itself and stops when no cell is left) and expects a grid_id on queued retries."""

    class Grid(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    return Grid


@contextlib.contextmanager
def _locked(sweep_dir: Path):
    """Serialize taking trials between the workers that share this sweep folder."""
    import fcntl

    with open(Path(sweep_dir) / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_dead_trials(study) -> None:
    """RUNNING trials of dead workers on this host → FAIL, with their cell queued again (it resumes)."""
    optuna = _optuna()
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") == host and "pid" in attrs and not _alive(int(attrs["pid"])):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
            log.info(f"trial {trial.number} ({attrs.get('cell')}): its worker (pid {attrs['pid']}) is gone; queued again")


def _requeue_failed(study, names: Sequence[str]) -> None:
    """At a worker's start: grid cells whose every trial failed are queued again (a --resume retries them)."""
    optuna = _optuna()
    by_cell: dict[str, list] = {}
    for trial in study.get_trials(deepcopy=False):
        cell = trial.params.get("cell") or trial.system_attrs.get("fixed_params", {}).get("cell")
        if cell is not None:
            by_cell.setdefault(cell, []).append(trial.state)
    failed = optuna.trial.TrialState.FAIL
    for name in names:
        states = by_cell.get(name, [])
        if states and all(s == failed for s in states):
            study.enqueue_trial({"cell": name}, user_attrs={"retry": True}, skip_if_exists=False)


def _grid_has_work(study, names: Sequence[str]) -> bool:
    """A WAITING trial, or a cell no trial has taken yet (GridSampler's unvisited ids)."""
    optuna = _optuna()
    states = optuna.trial.TrialState
    if study.get_trials(deepcopy=False, states=(states.WAITING,)):
        return True
    taken = {t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False)
             if t.state != states.WAITING}
    return any(index not in taken for index in range(len(names)))


def _budget_left(study, trials: int, cells: int) -> bool:
    """Fewer distinct cells tried (finished, pruned or running) than the budget: TPE suggesting a cell it has
    already tried costs no budget (the trial records that cell's value again, and the next one is asked)."""
    return len(_tried_cells(study)) < min(trials, cells)


def _tried_cells(study, running_only: bool = False, besides: int | None = None) -> set[str]:
    """The cells of the study's trials (only those running now, with `running_only`), but trial `besides`."""
    states = _optuna().trial.TrialState
    wanted = (states.RUNNING,) if running_only else (states.COMPLETE, states.PRUNED, states.RUNNING)
    return {t.user_attrs.get("cell") for t in study.get_trials(deepcopy=False, states=wanted) if t.number != besides}


def _suggest_cell(trial, cells: Sequence[Cell], axes: dict, search: str) -> Cell:
    by_name = {c.name: c for c in cells}
    if search == "grid":
        return by_name[trial.suggest_categorical("cell", list(by_name))]
    values = {}
    for axis, choices in axes.items():
        if len(choices) > 1:  # categorical over the grid's values (as text: Optuna stores None/str/float)
            texts = [repr(v) for v in choices]
            values[axis] = choices[texts.index(trial.suggest_categorical(axis, texts))]
    for cell in cells:
        if all(repr(cell.values.get(a)) == repr(v) for a, v in values.items()):
            trial.set_user_attr("cell", cell.name)
            return cell
    raise TledgeError(f"no grid cell has {values}")  # cannot happen: the axes are the grid's


def _value(cell: Cell, cell_dir: Path) -> float | None:
    row = cell_result(cell, cell_dir, "done")
    value = row.get("val_acc")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def run_worker(sweep_dir: Path, cells: Sequence[Cell], axes: dict, *, search: str = "grid",
               trials: int | None = None, storage: str | None = None, device: str | None = None,
               tracker=None, seed: int = 0, run_cell: Callable, reason_of: Callable[[BaseException], str]
               ) -> dict[str, tuple[str, str | None]]:
    """Take trials until the grid (or the trial budget) is done. Returns this worker's outcomes per cell.
    `run_cell` trains one cell and `reason_of` words a failure: tledge.training.sweep's own (passed in, so this
    module does not import the sweep that imports it)."""
    optuna = _optuna()
    states = optuna.trial.TrialState
    study = load_study(sweep_dir, cells, search, storage, seed, trials)
    names = [c.name for c in cells]
    budget = trials if search != "grid" else len(cells)
    outcomes: dict[str, tuple[str, str | None]] = {}
    cache: dict = {}
    with _locked(sweep_dir):
        _reap_dead_trials(study)
        if search == "grid":
            _requeue_failed(study, names)
            finished = {t.user_attrs.get("cell") for t in study.get_trials(deepcopy=False, states=(states.COMPLETE,))}
            for name in names:
                if name in finished:
                    log.info(f"{name}: already finished, skipping")
                    outcomes[name] = ("done", None)
    asked = 0
    while True:
        with _locked(sweep_dir):
            _reap_dead_trials(study)
            more = _grid_has_work(study, names) if search == "grid" else _budget_left(study, budget, len(cells))
            if not more or asked >= len(cells) + budget:  # the last: a worker whose every cell fails stops
                break
            trial = study.ask()
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("pid", os.getpid())
            cell = _suggest_cell(trial, cells, axes, search)
            busy = search != "grid" and cell.name in _tried_cells(study, running_only=True, besides=trial.number)
            trial.set_user_attr("cell", cell.name)
            if busy:  # another worker is training it now: one folder, one trainer
                trial.set_user_attr("error", "running in another worker")
                study.tell(trial, state=states.PRUNED)
        asked += 1
        if busy:
            log.info(f"trial {trial.number}: {cell.name} is running in another worker; asking again")
            continue
        log.info(f"\n=== sweep trial {trial.number}: {cell.name} ===")

        def report(epoch: int, row: dict, trial=trial) -> None:
            value = row.get("val_acc")
            if value is None:
                return
            step = int(row.get("epoch", epoch + 1))  # 1-based, as history.csv numbers epochs
            trial.report(float(value), step)
            if trial.should_prune():
                raise _Pruned(f"pruned after epoch {step} (val acc {float(value):.4f})")

        try:
            status = run_cell(cell, sweep_dir, device, cache, tracker, on_epoch_end=report)
        except _Pruned as exc:
            log.info(f"{cell.name}: {exc}")
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=states.PRUNED)
            outcomes[cell.name] = ("pruned", str(exc))
            continue
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=states.FAIL)
            outcomes[cell.name] = ("interrupted", None)
            log.warning(f"sweep interrupted in {cell.name}; resume with: tledge sweep --resume {sweep_dir}")
            break
        except Exception as exc:
            reason = reason_of(exc)
            log.warning(f"{cell.name}: FAILED: {reason}")
            if not isinstance(exc, TledgeError):
                log.info(traceback.format_exc().rstrip())
            trial.set_user_attr("error", reason)
            study.tell(trial, state=states.FAIL)
            outcomes[cell.name] = ("failed", reason)
            continue
        if status == "interrupted":
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=states.FAIL)
            outcomes[cell.name] = ("interrupted", None)
            log.warning(f"sweep interrupted in {cell.name}; resume with: tledge sweep --resume {sweep_dir}")
            break
        value = _value(cell, Path(sweep_dir) / cell.name)
        if value is None:
            study.tell(trial, state=states.FAIL)
            outcomes[cell.name] = ("incomplete", None)
        else:
            study.tell(trial, value)
            outcomes[cell.name] = ("done", None)
    return outcomes


def study_rows(sweep_dir: Path, cells: Sequence[Cell], search: str = "grid", storage: str | None = None,
               outcomes: dict | None = None) -> list[dict]:
    """One results row per grid cell (grid) or per cell a trial took (search), from the cells' own files;
    the trials add what the files cannot say (pruned, a failure's reason)."""
    optuna = _optuna()
    states = optuna.trial.TrialState
    study = optuna.load_study(study_name=study_name(sweep_dir, storage), storage=storage_url(sweep_dir, storage))
    latest: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        name = trial.user_attrs.get("cell")
        if name is not None and trial.state != states.WAITING:
            latest[name] = trial  # the last trial of a cell says its state
    shown = cells if search == "grid" else [c for c in cells if c.name in latest]
    rows = []
    for cell in shown:
        trial = latest.get(cell.name)
        status, error = (outcomes or {}).get(cell.name, ("pending", None))
        if trial is not None and (outcomes or {}).get(cell.name) is None:
            status = {states.PRUNED: "pruned", states.FAIL: "failed", states.RUNNING: "running",
                      states.COMPLETE: "done"}.get(trial.state, "pending")
            if trial.state == states.FAIL and trial.user_attrs.get("interrupted"):
                status = "interrupted"  # stopped by Ctrl-C/SIGTERM in a worker process; --resume continues it
            error = trial.user_attrs.get("error")
        rows.append(cell_result(cell, Path(sweep_dir) / cell.name, status, error))
    return rows


def best_row(rows: Sequence[dict]) -> dict | None:
    """The chosen cell: the best validation accuracy among finished cells (ties: the first). Test accuracy
    is never looked at."""
    done = [r for r in rows if r.get("status") == "done" and r.get("val_acc") is not None]
    return max(done, key=lambda r: r["val_acc"]) if done else None


def mark_best(rows: Sequence[dict]) -> dict | None:
    best = best_row(rows)
    for row in rows:
        row["chosen"] = row is best
    return best


def export_command(best: dict) -> str:
    return f"tledge export {best['run_dir']}"


def summary(best: dict | None) -> str:
    if best is None:
        return "no cell finished: nothing to choose"
    test = best.get("test_acc")
    return (f"best cell (by val acc): {best['cell']}: val acc {best['val_acc']:.4f}"
            + (f", test acc {test:.4f} (reported, not used for choosing)" if test is not None else "")
            + f"; export it with: {export_command(best)}")


def study_trials(sweep_dir: Path, storage: str | None = None) -> list:
    """The study's trials (optuna FrozenTrials), for tests and reports."""
    optuna = _optuna()
    return optuna.load_study(study_name=study_name(sweep_dir, storage),
                             storage=storage_url(sweep_dir, storage)).get_trials(deepcopy=False)



def check_storage(storage: str | None) -> None:
    """A --storage URL must open (parse, driver, server) before the sweep folder is made."""
    if storage is None:
        return
    optuna = _optuna()
    try:
        optuna.storages.RDBStorage(storage)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TledgeError(f"cannot open --storage {storage!r}: {text}; expected a reachable database URL such "
                          "as postgresql://user:password@host/db (with its driver installed)") from None
