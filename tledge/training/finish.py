"""The end of a run: the best epoch's weights restored, judged on the test split, and written out
(metrics.json, diagnosis.json, best.pt, card.json, curves.png) with a one-row summary table."""

from __future__ import annotations

import logging
from tledge.checkpoint import BEST, save_checkpoint
from tledge.logs import log_result
from tledge.table import format_table
from tledge.training import reports
from tledge.training.rundir import CARD_FILE, METRICS_FILE
from tledge.training.session import RunResult, TrainSession

log = logging.getLogger(__name__)


def finish_run(session: TrainSession, result: RunResult, test_ds) -> RunResult:
    """Restore the best epoch, evaluate it on the test split, write metrics, plots and the diagnosis."""
    from tledge.training.evaluate import evaluate_and_report

    model, run_dir = session.model, session.run_dir
    model.load_state_dict(session.best_state)
    diagnosis = reports.diagnose_fit(session.history, session.card.num_classes)
    result.diagnosis = diagnosis
    log.info(f"fit: {diagnosis['verdict']} - {diagnosis['reason']}")
    if len(test_ds) == 0:
        log.info("no test split: skipping test metrics")
        metrics = {}
    else:
        metrics = evaluate_and_report(model, session.card, test_ds, run_dir, session.setup,
                                      session.config.batch_size)
        session.card.best_metrics = {**session.card.best_metrics, "test_acc": metrics["accuracy"],
                                     "test_macro_f1": metrics["macro"]["f1"]}
    metrics.update({
        "best_epoch": result.best_epoch,
        "best_val_acc": session.best_val_acc,
        "train_time_s": session.train_time_s,
        "epochs_run": len(session.history),
        "trainable_params": session.frozen.trainable_params,
        "total_params": session.frozen.total_params,
        "diagnosis": diagnosis,
    })
    reports.write_json(run_dir / METRICS_FILE, metrics)
    reports.write_json(run_dir / "diagnosis.json", diagnosis)
    save_checkpoint(run_dir / BEST, {"card": session.card.to_dict(), "model": session.best_state,
                                     "epoch": session.best_epoch, "config": session.config.to_dict()})
    session.card.save(run_dir / CARD_FILE)
    reports.plot_curves(session.history, run_dir / "curves.png", title=f"{session.card.arch} · {run_dir.name}")
    log_result(log, _summary_table(session, metrics))
    log_result(log, f"results in {run_dir}  (next: tledge export {run_dir})")
    result.test_metrics = metrics
    return result


def _summary_table(session: TrainSession, metrics: dict) -> str:
    row = {
        "model": session.card.arch,
        "freeze": session.config.freeze,
        "trainable": f"{session.frozen.trainable_params:,}",
        "best epoch": metrics["best_epoch"],
        "val acc": round(session.best_val_acc, 4),
        "test acc": round(metrics["accuracy"], 4) if "accuracy" in metrics else None,
        "macro F1": round(metrics["macro"]["f1"], 4) if "macro" in metrics else None,
        "time s": round(session.train_time_s, 1),
    }
    return format_table([row])
