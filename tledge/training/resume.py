"""`tledge train --resume RUN`: continue a run folder, a k-fold run, or one fold of a k-fold run.

The data check (tledge.training.data_check) runs inside train_run / run_kfold: a changed data folder is
refused unless `force=True` (`--force`).
"""

from __future__ import annotations

import logging
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tledge.checkpoint import LAST
from tledge.errors import TledgeError
from tledge.training.config import TrainConfig
from tledge.training.rundir import CONFIG_FILE

log = logging.getLogger(__name__)

FOLD_NAME = re.compile(r"fold\d+")


def is_fold_dir(run_dir: Path) -> bool:
    """RUN/foldK of a k-fold run (the parent holds the k-fold run's config.json)."""
    return bool(FOLD_NAME.fullmatch(run_dir.name)) and (run_dir.parent / CONFIG_FILE).is_file()


@dataclass
class Resumed:
    """What a resume did: the run folder, its test metrics (k-fold: the summary) and whether Ctrl-C stopped it."""

    run_dir: Path
    metrics: dict = field(default_factory=dict)
    interrupted: bool = False


def resume_run(run_dir: str | Path, force: bool = False) -> Resumed:
    """Resume RUN (k-fold runs resume their unfinished folds; RUN/foldK resumes that fold only)."""
    from tledge.training.fit import train_run
    from tledge.training.kfold import run_kfold

    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise TledgeError(f"cannot resume {run_dir}: no {CONFIG_FILE} (not a tledge run folder)")
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    if not config.kfold or is_fold_dir(run_dir):
        finished = _finished(run_dir)
        if finished is not None:
            return Resumed(run_dir, finished)
    if is_fold_dir(run_dir):
        if not (run_dir / LAST).is_file():
            raise TledgeError(f"{run_dir} has not saved a checkpoint yet; resume the k-fold run instead: "
                              f"tledge train --resume {run_dir.parent}")
        result = train_run(config, run_dir=run_dir, resume=True, force=force)
        if not result.interrupted:
            log.info(f"fold resumed; to update the k-fold table run: tledge train --resume {run_dir.parent}")
        return Resumed(run_dir, dict(result.test_metrics or {}), result.interrupted)
    if config.kfold:
        outcome = run_kfold(config, resume_dir=run_dir, force=force)
        return Resumed(run_dir, dict(outcome.get("summary", {})), bool(outcome.get("interrupted", False)))
    result = train_run(config, run_dir=run_dir, resume=True, force=force)
    return Resumed(run_dir, dict(result.test_metrics or {}), result.interrupted)


def _finished(run_dir: Path) -> dict | None:
    """The metrics of a run that already finished (metrics.json is its last word), after saying so; None for
    a run that can go on. Resuming a finished run touches nothing: its best.pt, and so its exports, stay."""
    from tledge.training.rundir import METRICS_FILE

    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    log.info(f"{run_dir} finished already ({metrics.get('epochs_run', '?')} epochs; see {METRICS_FILE}): nothing to "
             "resume, its files are unchanged. To train longer, start a new run: tledge train DATA --epochs N")
    return metrics if isinstance(metrics, dict) else {}
