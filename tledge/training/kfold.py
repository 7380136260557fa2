"""Stratified k-fold cross-validation over train+val, as the studies report it: one ordinary run per
fold (runs/NAME/foldK), then per-fold and mean ± std accuracy, loss and time in kfold.json/kfold.md.

The test split stays untouched by every fold. The run folder itself gets the best fold's best.pt and
splits.json, so `tledge eval/export RUN` work on a k-fold run as on any other.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tledge.checkpoint import BEST
from tledge.errors import TledgeError
from tledge.logs import log_result
from tledge.splits import SPLITS_FILE, Splits
from tledge.table import format_table
from tledge.training import distributed, reports
from tledge.training.config import TrainConfig
from tledge.datasets.folders import build_splits
from tledge.datasets.split import stratified_kfold
from tledge.training.fit import RunResult, train_run
from tledge.training.rundir import CARD_FILE, CONFIG_FILE, METRICS_FILE, new_run_dir
from tledge.training.tracking import Tracker, kfold_metrics

log = logging.getLogger(__name__)

KFOLD_JSON = "kfold.json"


def fold_splits(splits: Splits, k: int, seed: int) -> list[Splits]:
    """K Splits objects: fold i validates on the i-th stratified fold of train+val, trains on the rest."""
    pool = splits.items.get("train", []) + splits.items.get("val", [])
    folds = stratified_kfold([label for _, label in pool], k, seed)
    result = []
    for train_idx, val_idx in folds:
        items = {
            "train": [pool[i] for i in train_idx],
            "val": [pool[i] for i in val_idx],
            "test": list(splits.items.get("test", [])),
        }
        result.append(Splits(splits.root, splits.class_names, items, splits.skipped))
    return result


def run_kfold(config: TrainConfig, resume_dir: Path | None = None,
              force: bool = False, parent_tracker: Tracker | None = None) -> dict:
    """Train every fold (skipping finished ones when resuming) and write the cross-validation table.

    The run folder is made only once the folds are known to be possible, and removed again if no fold got
    as far as a checkpoint. Resuming refuses changed data unless `force`.
    """
    from tledge.paths import clean_stale_temp_files
    from tledge.training.fit import _remove_half_made
    from tledge.training.rundir import check_run_target

    if config.kfold < 2:
        raise TledgeError(f"--kfold needs at least 2 folds, got {config.kfold}")
    if distributed.from_environment().enabled:
        raise TledgeError("--kfold under torchrun is not supported; run folds side by side with tledge sweep --devices")
    created = None
    if resume_dir is None:
        check_run_target(config.project, config.name, config.exist_ok)
        splits, report = build_splits(config.data, tuple(config.split), config.seed)
        for line in report.summary_lines():
            log.info(line)
        per_fold = fold_splits(splits, config.kfold, config.seed)
        existed = bool(config.name) and (Path(config.project) / config.name).exists()
        run_dir = new_run_dir(config.project, config.name, config.exist_ok)
        created = None if existed else run_dir
        splits.save(run_dir)
        reports.write_json(run_dir / CONFIG_FILE, config.to_dict())
        fingerprint = report.fingerprint
    else:
        from tledge.training.data_check import check_data_unchanged

        run_dir = Path(resume_dir)
        clean_stale_temp_files(run_dir)
        fingerprint = "" if force else check_data_unchanged(run_dir, config)
        splits = Splits.load(run_dir)
        per_fold = fold_splits(splits, config.kfold, config.seed)
    # the k-fold run's records (a child of a sweep's, when a sweep gives them); one child per fold
    tracker = Tracker.open(config.track, run_dir, parent=parent_tracker, resume=resume_dir is not None)
    if resume_dir is None:
        tracker.log_params(config.to_dict())
    rows = []
    for index, fold in enumerate(per_fold, 1):
        fold_dir = run_dir / f"fold{index}"
        log.info(f"\n=== fold {index}/{config.kfold}: train {len(fold.items['train'])}, val {len(fold.items['val'])} ===")
        try:
            result = _train_fold(config, fold_dir, fold, fingerprint, tracker)
        except BaseException as exc:
            tracker.close("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            if not any(run_dir.glob("fold*/last.pt")):
                _remove_half_made(created)
            raise
        if result.interrupted:
            tracker.close("KILLED")
            if not any(run_dir.glob("fold*/last.pt")):
                _remove_half_made(created)
                return {"interrupted": True, "run_dir": str(run_dir)}
            log.warning(f"k-fold interrupted in fold {index}; resume with: tledge train --resume {run_dir}")
            return {"interrupted": True, "run_dir": str(run_dir)}
        rows.append(_fold_row(index, result, fold_dir))
    table_rows, summary = reports.kfold_table(rows)
    best = max(rows, key=lambda r: r["val_acc"])
    best_dir = run_dir / f"fold{best['fold']}"
    for name in (BEST, CARD_FILE):
        shutil.copyfile(best_dir / name, run_dir / name)
    shutil.copyfile(best_dir / SPLITS_FILE, run_dir / SPLITS_FILE)
    result = {"folds": rows, "summary": summary, "best_fold": best["fold"], "k": config.kfold}
    reports.write_json(run_dir / KFOLD_JSON, result)
    (run_dir / "kfold.md").write_text(format_table(table_rows, markdown=True) + "\n")
    log_result(log, "\n" + format_table(table_rows))
    log_result(log, f"best fold {best['fold']} copied to {run_dir / BEST}")
    tracker.log_summary({**kfold_metrics(summary), "best_fold": float(best["fold"])},
                        [run_dir / KFOLD_JSON, run_dir / "kfold.md"])
    tracker.close("FINISHED", announce=parent_tracker is None)
    return {**result, "run_dir": str(run_dir)}


def _train_fold(config: TrainConfig, fold_dir: Path, fold: Splits, fingerprint: str,
                tracker: Tracker) -> RunResult:
    """A finished fold is read back; a started one resumes; a new one trains (recorded as a child of
    `tracker`, the k-fold run's records)."""
    if (fold_dir / METRICS_FILE).is_file():
        log.info(f"{fold_dir.name} already finished: skipping")
        metrics = reports.read_json(fold_dir / METRICS_FILE)
        from tledge.card import ModelCard

        return RunResult(fold_dir, ModelCard.load(fold_dir / CARD_FILE), [], metrics["best_epoch"],
                         metrics["best_val_acc"], metrics["train_time_s"], test_metrics=metrics)
    if (fold_dir / "last.pt").is_file():
        return train_run(config, run_dir=fold_dir, resume=True, force=True,  # data checked by run_kfold
                         parent_tracker=tracker)
    return train_run(config, run_dir=fold_dir, splits=fold, fingerprint=fingerprint,
                     parent_tracker=tracker)


def _fold_row(index: int, result: RunResult, fold_dir: Path) -> dict:
    metrics = result.test_metrics or {}
    history = result.history or reports.read_history_csv(fold_dir / "history.csv")
    best = history[result.best_epoch - 1] if history and result.best_epoch >= 1 else {}
    return {
        "fold": index,
        "val_acc": result.best_val_acc,
        "val_loss": best.get("val_loss"),
        "test_acc": metrics.get("accuracy"),
        "train_time_s": result.train_time_s,
        "best_epoch": result.best_epoch,
    }
