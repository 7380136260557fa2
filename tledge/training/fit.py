"""One training run, start to finish: data → model → epochs → best.pt → test metrics, plots, diagnosis.

This module decides what happens in which order and who cleans up; the parts live apart: the session
(model, optimizer, checkpoint keys: tledge.training.session), the epochs (tledge.training.epochs, one pass each
through tledge.training.loop) and the end of the run (tledge.training.finish).

Resumable: last.pt is written atomically after every epoch with the model, optimizer, scheduler,
scaler, RNG state and history; `--resume RUN` continues at the next epoch and gives bit-for-bit the
same result as an uninterrupted run (data order and augmentation are seeded per epoch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from tledge.checkpoint import LAST, load_checkpoint
from tledge.errors import TledgeError
from tledge.splits import Splits
from tledge.training import distributed, reports
from tledge.training.config import TrainConfig
from tledge.datasets.folders import build_splits
from tledge.training.epochs import make_datasets, run_epochs
from tledge.training.finish import finish_run
from tledge.training.rundir import CONFIG_FILE, METRICS_FILE, check_run_target, new_run_dir
from tledge.training.session import RunResult, TrainSession, device_type, new_session, resume_session
from tledge.training.tracking import Tracker

log = logging.getLogger(__name__)


def train_run(
    config: TrainConfig,
    *,
    run_dir: Path | None = None,
    splits: Splits | None = None,
    fingerprint: str = "",
    resume: bool = False,
    force: bool = False,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    parent_tracker: Tracker | None = None,
    feature_cache: Path | None = None,
) -> RunResult:
    """Train one model. `splits`/`run_dir` are given by k-fold; otherwise the data are scanned here.

    Everything that can be checked is checked before the run folder exists (output folder, --name, data,
    splits, model, weights, freeze policy), and a run that fails or is stopped before its first checkpoint
    leaves no folder behind. Resuming refuses data that changed since the run started, unless `force`.
    Under torchrun every rank calls this; only rank 0 logs and writes (see tledge.training.distributed).
    With `config.track` the run is recorded (tledge.training.tracking); k-fold gives its own records as
    `parent_tracker`, and each fold is recorded as a child of them. `feature_cache`: a folder where runs
    with the same frozen prefix share its cached outputs (a sweep's; tledge.training.trunk_cache).
    """
    from tledge.paths import clean_stale_temp_files

    info = distributed.from_environment()
    if not info.is_main:  # the rank is the process's for good (torchrun's environment): only rank 0 talks
        logging.getLogger("tledge").setLevel(logging.WARNING)
    succeeded = False
    created: Path | None = None  # the run folder, when this call made it (removed again if nothing was saved)
    tracker: Tracker | None = None
    try:
        try:  # a stop at any point before the first checkpoint (an error, Ctrl-C, SIGTERM) removes the new folder
            if resume:
                run_dir = Path(run_dir)
                config = _config_of(run_dir)
                if info.is_main:
                    clean_stale_temp_files(run_dir)
                if not force:
                    from tledge.training.data_check import check_data_unchanged

                    check_data_unchanged(run_dir, config)
                distributed.init(info, device_type(config))
                session = resume_session(run_dir, info)
            else:
                if run_dir is None:
                    check_run_target(config.project, config.name, config.exist_ok)
                distributed.init(info, device_type(config))
                if splits is None:
                    splits, report = build_splits(config.data, tuple(config.split), config.seed)
                    for line in report.summary_lines():
                        log.info(line)
                    fingerprint = report.fingerprint
                _check_splits_usable(splits)
                session = new_session(config, None, splits, fingerprint, info)
                if info.is_main:
                    target = Path(run_dir) if run_dir is not None else None
                    if target is None and config.name:
                        target = Path(config.project) / config.name
                    existed = target is not None and target.exists()
                    if run_dir is None:
                        run_dir = new_run_dir(config.project, config.name, config.exist_ok)
                    Path(run_dir).mkdir(parents=True, exist_ok=True)
                    created = None if existed else Path(run_dir)
                    clean_stale_temp_files(run_dir)
                    splits.save(run_dir)
                    reports.write_json(Path(run_dir) / CONFIG_FILE, config.to_dict())
                run_dir = Path(distributed.broadcast(str(run_dir), info))
                session.run_dir = run_dir
            session.feature_cache = Path(feature_cache) if feature_cache is not None else None
            tracker = Tracker.open(config.track if info.is_main else (), Path(run_dir), parent=parent_tracker,
                                   resume=resume, resume_step=session.start_epoch + 1 if resume else None)
            if not resume:
                tracker.log_params(config.to_dict())
            result = _fit(session, on_epoch_end, tracker)
        except BaseException as exc:
            if tracker is not None:
                tracker.close("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            _remove_half_made(created)
            raise
        tracker.close("KILLED" if result.interrupted else "FINISHED", announce=parent_tracker is None)
        if result.interrupted:
            _remove_half_made(created)
        succeeded = True
        return result
    finally:
        distributed.shutdown(success=succeeded)


def _check_splits_usable(splits: Splits) -> None:
    if not splits.items.get("train") or not splits.items.get("val"):
        raise TledgeError("the train and val splits both need images; use more images or another --split")


def _remove_half_made(created: Path | None) -> None:
    """A run folder this call made, with no checkpoint in it yet, is removed (it could not be resumed)."""
    import shutil

    if created is None or not created.is_dir() or (created / LAST).is_file():
        return
    shutil.rmtree(created, ignore_errors=True)
    log.info(f"removed {created}: the run stopped before its first checkpoint")


def _config_of(run_dir: Path) -> TrainConfig:
    last = run_dir / LAST
    if not last.is_file():
        raise TledgeError(f"cannot resume {run_dir}: no {LAST} there (was it started by tledge train?)")
    return TrainConfig.from_dict(load_checkpoint(last)["config"])


def _fit(session: TrainSession, on_epoch_end, tracker: Tracker) -> RunResult:
    """Datasets, the epochs, and (on rank 0, when an epoch was kept) the test split and the run's files."""
    if tracker.active:
        user_hook = on_epoch_end

        def on_epoch_end(epoch: int, row: dict) -> None:
            tracker.log_epoch(row)
            if user_hook is not None:
                user_hook(epoch, row)

    train_ds, val_ds, test_ds = make_datasets(session)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise TledgeError("the train and val splits both need images; use more images or another --split")
    log.info(f"device: {session.setup.describe()}; train {len(train_ds)}, val {len(val_ds)}, test {len(test_ds)} images")
    result = run_epochs(session, train_ds, val_ds, on_epoch_end)
    if result.interrupted or session.best_state is None or not session.dist.is_main:
        return result
    result = finish_run(session, result, test_ds)
    tracker.log_final(result.test_metrics or {}, session.run_dir, [session.run_dir / METRICS_FILE])
    return result
