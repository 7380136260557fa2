"""Experiment tracking, optional (`pip install 'tledge[track]'`): TensorBoard event files and MLflow runs,
chosen with `--track tensorboard,mlflow` (`track=` in Python).

What a run records: its TrainConfig as parameters, one row of metrics per epoch (history.csv's columns,
step = epoch), the final metrics (test_* and best_*), and the PNG plots it writes (MLflow artifacts,
TensorBoard images). A k-fold run is one parent with a child per fold (MLflow nested runs; TensorBoard a
subfolder per fold).

Where: TensorBoard writes RUN/tensorboard; MLflow a SQLite store in RUN/mlruns (artifacts beside it), or
the server named by MLFLOW_TRACKING_URI (MLflow's own variable; MLFLOW_EXPERIMENT_NAME too, default
"tledge"). Each run folder keeps RUN/tracking.json (where its records went), so a resumed run or fold
goes on in the same records.

Tracking never costs a run: a tracker that fails (store unwritable, server gone) warns once and is
dropped, and training goes on.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tledge.errors import TledgeError

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "mlflow")
MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # what must import for each tracker
TRACKING_FILE = "tracking.json"
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DIR = "mlruns"
MLFLOW_DB = "mlflow.db"
EXPERIMENT = "tledge"
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s")


# ------------------------------------------------------------------------------------------------ the option
def parse_track(value: Any) -> tuple[str, ...]:
    """'tensorboard,mlflow' or ['mlflow'] → ('tensorboard', 'mlflow'); '' or None → () (off)."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(str(p).strip().lower() for p in parts if str(p).strip()))


def track_problem(names: Iterable[str]) -> str | None:
    """An unknown tracker name, or a chosen tracker whose package is missing (checked before any file)."""
    for name in names:
        if name not in TRACKERS:
            close = difflib.get_close_matches(name, TRACKERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"unknown tracker {name!r}: choose from {', '.join(TRACKERS)}{hint}"
    missing = [n for n in names if importlib.util.find_spec(MODULES[n]) is None]
    if missing:
        return f"{', '.join(missing)} is not installed; pip install 'tledge[track]'"
    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):  # the local SQLite store (mlflow-skinny lacks it)
        lacking = [m for m in ("sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
        if lacking:
            return (f"mlflow's local store needs {' and '.join(lacking)}; pip install 'tledge[track]' "
                    "or set MLFLOW_TRACKING_URI")
    return None


# ------------------------------------------------------------------------------------------------ records
def flat_params(config: dict) -> dict[str, str]:
    """A TrainConfig dict as MLflow/TensorBoard parameters: text, lists as commas, dicts as JSON."""
    params = {}
    for key, value in config.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        params[key] = str(value)
    return params


def final_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json (or the k-fold summary) → flat numbers: test_accuracy, test_macro_f1, best_val_acc, ..."""
    flat: dict[str, float] = {}
    if _number(metrics.get("accuracy")):
        flat["test_accuracy"] = float(metrics["accuracy"])
    for average in ("macro", "weighted"):
        for key, value in (metrics.get(average) or {}).items():
            if _number(value) and key != "support":
                flat[f"test_{average}_{key}"] = float(value)
    for key in ("best_epoch", "best_val_acc", "train_time_s", "epochs_run"):
        if _number(metrics.get(key)):
            flat[key] = float(metrics[key])
    return flat


def kfold_metrics(summary: dict) -> dict[str, float]:
    """k-fold summary {metric: {mean, std, n}} → {metric_mean, metric_std}."""
    flat = {}
    for key, stats in summary.items():
        for part in ("mean", "std"):
            if _number(stats.get(part)):
                flat[f"{key}_{part}"] = float(stats[part])
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plots(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("*.png"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ------------------------------------------------------------------------------------------------ backends
class TensorBoardRecord:
    """One run's event files: RUN/tensorboard, or PARENT/tensorboard/NAME for a fold."""

    name = "tensorboard"

    def __init__(self, logdir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        # purge_step drops what an interrupted run wrote after its last saved epoch
        self.writer = SummaryWriter(str(self.logdir), purge_step=resume_step)

    def info(self) -> dict:
        return {"logdir": str(self.logdir.resolve())}

    def params(self, params: dict[str, str]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("config", "| option | value |\n|---|---|\n" + rows, 0)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def images(self, paths: list[Path]) -> None:
        import cv2

        for path in paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self.writer.add_image(path.stem, image[:, :, ::-1].copy(), 0, dataformats="HWC")
        self.writer.flush()

    def artifacts(self, paths: list[Path]) -> None:
        """TensorBoard has no files; JSON and Markdown become text."""
        for path in paths:
            if path.suffix in (".json", ".md"):
                self.writer.add_text(path.name, "```\n" + path.read_text(encoding="utf-8") + "\n```", 0)

    def close(self, status: str) -> None:
        self.writer.close()

    def where(self) -> str:
        return f"tensorboard: tensorboard --logdir {self.logdir}"


class MlflowRecord:
    """One MLflow run through MlflowClient (no global state, so parents and children can be open at once)."""

    name = "mlflow"

    def __init__(self, uri: str, experiment_id: str, run_id: str, resumed: bool) -> None:
        from mlflow.tracking import MlflowClient

        self.uri, self.experiment_id, self.run_id, self.resumed = uri, experiment_id, run_id, resumed
        self.client = MlflowClient(tracking_uri=uri)

    @classmethod
    def open(cls, store_dir: Path, run_name: str, parent: "MlflowRecord | None", run_dir: Path) -> "MlflowRecord":
        from mlflow.tracking import MlflowClient

        if parent is not None:
            uri, experiment_id = parent.uri, parent.experiment_id
            client = parent.client
        else:
            uri = os.environ.get("MLFLOW_TRACKING_URI") or local_uri(store_dir)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
            with _quiet("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..."
                client = MlflowClient(tracking_uri=uri)
                experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:
                local = not os.environ.get("MLFLOW_TRACKING_URI")
                location = (store_dir / MLFLOW_DIR / "artifacts").resolve().as_uri() if local else None
                experiment_id = client.create_experiment(name, artifact_location=location)
        tags = {"tledge.run_dir": str(run_dir.resolve())}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.run_id
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        return cls(uri, experiment_id, run.info.run_id, resumed=False)

    @classmethod
    def reopen(cls, info: dict) -> "MlflowRecord":
        record = cls(info["uri"], info["experiment_id"], info["run_id"], resumed=True)
        record.client.update_run(record.run_id, status="RUNNING")
        return record

    def info(self) -> dict:
        return {"uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.run_id}

    def params(self, params: dict[str, str]) -> None:
        if self.resumed:  # logged when the run started; MLflow refuses to log a parameter twice
            return
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def images(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), "plots")

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def where(self) -> str:
        if self.uri.startswith("sqlite:///"):
            return f"mlflow: mlflow ui --backend-store-uri {self.uri}  (run {self.run_id})"
        return f"mlflow: run {self.run_id} at {self.uri}"


@contextlib.contextmanager
def _quiet(*names: str):
    """These loggers say only warnings while the block runs (a new SQLite store logs its table set-up)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def local_uri(store_dir: Path) -> str:
    """The default MLflow store of a run folder: SQLite in RUN/mlruns (MLflow 3 refuses plain-file stores)."""
    folder = (Path(store_dir) / MLFLOW_DIR).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / MLFLOW_DB}"


# ------------------------------------------------------------------------------------------------ the tracker
class Tracker:
    """The chosen trackers of one run, fold or parent. Every method is safe to call: a backend that raises
    is reported once (a warning) and dropped; the others and the training run go on. With no trackers
    chosen every method does nothing."""

    def __init__(self, run_dir: Path | None, records: dict[str, Any]) -> None:
        self.run_dir, self.records = run_dir, records

    @property
    def active(self) -> bool:
        return bool(self.records)

    @classmethod
    def open(cls, names: Iterable[str], run_dir: Path, *, parent: "Tracker | None" = None,
             resume: bool = False, resume_step: int | None = None) -> "Tracker":
        """Start the records of `run_dir` (or, with `resume`, go on in those RUN/tracking.json names). A
        fold's or cell's records go into its parent's store: MLflow a nested run, TensorBoard a subfolder.
        `resume_step`: the first epoch still to come (TensorBoard drops what was written from there on)."""
        run_dir = Path(run_dir)
        names = tuple(names)
        tracker = cls(run_dir, {})
        if not names:
            return tracker
        saved = _read_saved(run_dir) if resume else {}
        for name in names:
            try:
                tracker.records[name] = _open_record(name, run_dir, saved.get(name), parent, resume_step)
            except Exception as exc:  # noqa: BLE001 - tracking must never cost the run
                log.warning(f"{name} tracking off for this run: {_first_line(exc)}")
        tracker._save()
        return tracker

    def _save(self) -> None:
        if not self.records or self.run_dir is None:
            return
        try:
            from tledge.atomic import write_json

            write_json(self.run_dir / TRACKING_FILE, {n: r.info() for n, r in self.records.items()})
        except Exception as exc:  # noqa: BLE001
            log.warning(f"cannot write {self.run_dir / TRACKING_FILE}: {_first_line(exc)}")

    def _each(self, action: Callable[[Any], None]) -> None:
        for name, record in list(self.records.items()):
            try:
                action(record)
            except Exception as exc:  # noqa: BLE001 - tracking must never cost the run
                del self.records[name]
                log.warning(f"{name} tracking stopped: {_first_line(exc)}; training goes on without it")

    def log_params(self, config: dict) -> None:
        params = flat_params(config)
        self._each(lambda r: r.params(params))

    def log_epoch(self, row: dict) -> None:
        values = {k: float(row[k]) for k in EPOCH_METRICS if _number(row.get(k))}
        self._each(lambda r: r.metrics(values, int(row["epoch"])))

    def log_final(self, metrics: dict, run_dir: Path, extra_files: Iterable[Path] = ()) -> None:
        """Final metrics (step 0), the PNG plots of `run_dir`, and any extra files (metrics.json, ...)."""
        values = final_metrics(metrics)
        plots = _plots(Path(run_dir))
        files = [Path(p) for p in extra_files if Path(p).is_file()]
        if values:
            self._each(lambda r: r.metrics(values, 0))
        self._each(lambda r: r.images(plots))
        self._each(lambda r: r.artifacts(files))

    def log_summary(self, values: dict[str, float], files: Iterable[Path] = ()) -> None:
        """A parent's own numbers (k-fold mean/std) and files (kfold.json)."""
        files = [Path(p) for p in files if Path(p).is_file()]
        if values:
            self._each(lambda r: r.metrics(values, 0))
        self._each(lambda r: r.artifacts(files))

    def close(self, status: str = "FINISHED", announce: bool = False) -> None:
        """FINISHED, FAILED or KILLED (Ctrl-C). `announce`: log how to look at the records."""
        lines = [r.where() for r in self.records.values()] if announce else []
        self._each(lambda r: r.close(status))
        self.records = {}
        for line in lines:
            log.info(line)


def _read_saved(run_dir: Path) -> dict:
    path = run_dir / TRACKING_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _open_record(name: str, run_dir: Path, saved: dict | None, parent: Tracker | None, resume_step: int | None):
    parent_record = parent.records.get(name) if parent is not None else None
    if name == "tensorboard":
        if saved:
            logdir = Path(saved["logdir"])
        elif parent_record is not None:
            logdir = parent_record.logdir / run_dir.name
        else:
            logdir = run_dir / TENSORBOARD_DIR
        return TensorBoardRecord(logdir, resume_step)
    if saved:
        return MlflowRecord.reopen(saved)
    if parent is not None and parent_record is None:  # the parent's store failed: the fold goes without
        raise TledgeError("the parent run has no MLflow record")
    return MlflowRecord.open(run_dir, run_dir.name, parent_record, run_dir)


# ------------------------------------------------------------------------------------------------ export
def record_export(run_dir: Path | None, rows: Iterable[Any], files: Iterable[Path]) -> bool:
    """`tledge export` of a run tracked in MLflow: its artifacts (under export/) and, per format, the
    parity verdict (tag parity.FORMAT: within / over / inconclusive / the step's failure) and numbers
    (parity_FORMAT_agreement, _acc, _acc_delta, _images; FORMAT_size_mb) go into the run's MLflow run.
    The run keeps the status it had. A failure here warns and the export goes on. True when recorded."""
    saved = _read_saved(Path(run_dir)).get("mlflow") if run_dir is not None else None
    if not saved:
        return False
    if importlib.util.find_spec("mlflow") is None:
        log.warning(f"{run_dir} is tracked in MLflow, but mlflow is not installed here: this export is not recorded")
        return False
    try:
        record = MlflowRecord(saved["uri"], saved["experiment_id"], saved["run_id"], resumed=True)
        status = record.client.get_run(record.run_id).info.status
        metrics: dict[str, float] = {}
        for row in rows:
            name = row.format.replace("-", "_")
            record.client.set_tag(record.run_id, f"parity.{row.format}",
                                  row.parity.outcome if row.parity is not None else row.status)
            if row.ok:
                metrics[f"{name}_size_mb"] = float(row.size_mb)
            if row.parity is not None:
                for key in ("agreement", "acc_artifact", "acc_delta", "images"):
                    value = getattr(row.parity, key, None)
                    if _number(value):
                        metrics[f"parity_{name}_{'acc' if key == 'acc_artifact' else key}"] = float(value)
        if metrics:
            record.metrics(metrics, 0)
        for path in files:
            if Path(path).is_file():
                record.client.log_artifact(record.run_id, str(path), "export")
        record.client.update_run(record.run_id, status=status)
        log.info(f"export recorded in MLflow run {record.run_id} ({record.uri})")
        return True
    except Exception as exc:  # noqa: BLE001 - the export stands without its record
        log.warning(f"this export was not recorded in MLflow: {_first_line(exc)}")
        return False
