"""One training run, start to finish: data → model → epochs → best.pt → test metrics, plots, diagnosis.

Resumable: last.pt is written atomically after every epoch with the model, optimizer, scheduler,
scaler, RNG state and history; `--resume RUN` continues at the next epoch and gives bit-for-bit the
same result as an uninterrupted run (data order and augmentation are seeded per epoch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tledge.card import ModelCard
from tledge.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from tledge.errors import TledgeError
from tledge.splits import Splits
from tledge.table import format_table
from tledge.train import distributed, reports
from tledge.train.backbones import create_model
from tledge.train.config import TrainConfig
from tledge.train.data import build_splits
from tledge.train.dataset import ImageDataset, make_loader
from tledge.train.device import DeviceSetup, default_workers, resolve_device
from tledge.train.features import feature_loader
from tledge.train.freeze import FreezeResult, apply_freeze, set_train_mode
from tledge.train.loop import EpochStats, evaluate, train_one_epoch
from tledge.train.optim import make_optimizer, make_scheduler
from tledge.train.prefix import TrainableSuffix, cache_prefix, cached_prefix_stages, has_cacheable_prefix
from tledge.train.rundir import CARD_FILE, CONFIG_FILE, HISTORY_FILE, METRICS_FILE, check_run_target, new_run_dir

Log = Callable[[str], None]


@dataclass
class RunResult:
    run_dir: Path
    card: ModelCard
    history: list[dict]
    best_epoch: int
    best_val_acc: float
    train_time_s: float
    test_metrics: dict | None = None
    diagnosis: dict | None = None
    interrupted: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class _Session:
    """Everything one run holds while it trains (built fresh or from last.pt)."""

    config: TrainConfig
    run_dir: Path
    splits: Splits
    card: ModelCard
    model: nn.Module
    frozen: FreezeResult
    setup: DeviceSetup
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    criterion: nn.Module
    dist: distributed.DistInfo = distributed.SINGLE
    train_module: nn.Module | None = None  # the model (or its DDP wrapper) that training steps call
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    best_epoch: int = -1
    best_val_acc: float = -1.0
    best_val_loss: float = float("inf")
    best_state: dict | None = None
    train_time_s: float = 0.0


def weights_origin(weights: str) -> str:
    if weights in ("imagenet", "none"):
        return weights
    return f"file:{Path(weights).name}"


def train_run(
    config: TrainConfig,
    *,
    run_dir: Path | None = None,
    splits: Splits | None = None,
    fingerprint: str = "",
    resume: bool = False,
    force: bool = False,
    log: Log = print,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> RunResult:
    """Train one model. `splits`/`run_dir` are given by k-fold; otherwise the data are scanned here.

    Everything that can be checked is checked before the run folder exists (output folder, --name, data,
    splits, model, weights, freeze policy), and a run that fails or is stopped before its first checkpoint
    leaves no folder behind. Resuming refuses data that changed since the run started, unless `force`.
    Under torchrun every rank calls this; only rank 0 logs and writes (see tledge.train.distributed).
    """
    from tledge.paths import clean_stale_temp_files

    info = distributed.from_environment()
    if not info.is_main:
        log = _silent
    succeeded = False
    created: Path | None = None  # the run folder, when this call made it (removed again if nothing was saved)
    try:
        if resume:
            run_dir = Path(run_dir)
            config = _config_of(run_dir)
            if info.is_main:
                clean_stale_temp_files(run_dir)
            if not force:
                from tledge.train.data_check import check_data_unchanged

                check_data_unchanged(run_dir, config, log)
            distributed.init(info, _device_type(config))
            session = _resume_session(run_dir, log, info)
        else:
            if run_dir is None:
                check_run_target(config.project, config.name, config.exist_ok)
            distributed.init(info, _device_type(config))
            if splits is None:
                splits, report = build_splits(config.data, tuple(config.split), config.seed)
                for line in report.summary_lines():
                    log(line)
                fingerprint = report.fingerprint
            _check_splits_usable(splits)
            session = _new_session(config, None, splits, fingerprint, log, info)
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
        try:
            result = _fit(session, log, on_epoch_end)
        except BaseException:
            _remove_half_made(created, log)
            raise
        if result.interrupted:
            _remove_half_made(created, log)
        succeeded = True
        return result
    finally:
        distributed.shutdown(success=succeeded)


def _check_splits_usable(splits: Splits) -> None:
    if not splits.items.get("train") or not splits.items.get("val"):
        raise TledgeError("the train and val splits both need images; use more images or another --split")


def _remove_half_made(created: Path | None, log: Log) -> None:
    """A run folder this call made, with no checkpoint in it yet, is removed (it could not be resumed)."""
    import shutil

    if created is None or not created.is_dir() or (created / LAST).is_file():
        return
    shutil.rmtree(created, ignore_errors=True)
    log(f"removed {created}: the run stopped before its first checkpoint")


def _silent(_line: str) -> None:
    """Log sink of ranks other than 0."""


def _device_type(config: TrainConfig) -> str:
    return "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu"


def _config_of(run_dir: Path) -> TrainConfig:
    last = run_dir / LAST
    if not last.is_file():
        raise TledgeError(f"cannot resume {run_dir}: no {LAST} there (was it started by tledge train?)")
    return TrainConfig.from_dict(load_checkpoint(last)["config"])


def _build_card(config: TrainConfig, class_names: list[str], fingerprint: str) -> ModelCard:
    return ModelCard(
        arch=config.model,
        class_names=class_names,
        input_size=(config.img_size, config.img_size),
        resize=config.resize,
        head=config.head,
        dropout=config.dropout,
        arch_kwargs=dict(config.arch_kwargs),
        weights_origin=weights_origin(config.weights),
        dataset_fingerprint=fingerprint,
    )


def _assemble(config, run_dir, splits, card, weights, log, info=distributed.SINGLE) -> _Session:
    torch.manual_seed(config.seed)
    model = create_model(config.model, card.num_classes, weights, config.head, config.dropout, **config.arch_kwargs)
    frozen = apply_freeze(model, config.freeze)
    log(frozen.summary)
    device = config.device
    if info.enabled and _device_type(config) == "cuda":
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(info.local_rank)
    setup = resolve_device(device, config.amp)
    if info.enabled and config.sync_bn and setup.is_cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        frozen = apply_freeze(model, config.freeze)  # the converted BN layers are new modules
    model = model.to(setup.device)
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.weight_decay, config.momentum)
    scheduler = make_scheduler(
        config.scheduler, optimizer, config.epochs, config.step_size, config.gamma, config.warmup_epochs
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    session = _Session(config, run_dir, splits, card, model, frozen, setup, optimizer, scheduler,
                       setup.grad_scaler(), criterion, info)
    session.train_module = _wrap_for_training(session)
    return session


def _wrap_for_training(session: _Session) -> nn.Module:
    """The module a training step calls: the part after the cached frozen prefix (the head alone for
    freeze all), the model otherwise; wrapped in DistributedDataParallel under torchrun."""
    module = session.model
    if _uses_prefix_cache(session.config):
        module = TrainableSuffix(session.model, _prefix_stages(session))
    if not session.dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [session.setup.device.index] if session.setup.is_cuda else None
    return DistributedDataParallel(module, device_ids=ids)


def _new_session(config: TrainConfig, run_dir: Path, splits: Splits, fingerprint: str, log: Log,
                 info: distributed.DistInfo) -> _Session:
    card = _build_card(config, splits.class_names, fingerprint)
    return _assemble(config, run_dir, splits, card, config.weights, log, info)


def _resume_session(run_dir: Path, log: Log, info: distributed.DistInfo) -> _Session:
    state = load_checkpoint(run_dir / LAST)
    config = TrainConfig.from_dict(state["config"])
    card = ModelCard.from_dict(state["card"])
    session = _assemble(config, run_dir, Splits.load(run_dir), card, "none", log, info)
    session.model.load_state_dict(state["model"])
    session.optimizer.load_state_dict(state["optimizer"])
    if session.scheduler is not None and state.get("scheduler"):
        session.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        session.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if torch.cuda.is_available() and state["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    session.history = list(state.get("history", []))
    session.start_epoch = int(state["epoch"]) + 1
    session.best_epoch = int(state.get("best_epoch", -1))
    session.best_val_acc = float(state.get("best_val_acc", -1.0))
    session.best_val_loss = float(state.get("best_val_loss", float("inf")))
    session.train_time_s = float(state.get("train_time_s", 0.0))
    if (run_dir / BEST).is_file():
        session.best_state = load_checkpoint(run_dir / BEST)["model"]
    log(f"resuming {run_dir} at epoch {session.start_epoch + 1}/{config.epochs}")
    return session


def _datasets(session: _Session):
    config, splits, card = session.config, session.splits, session.card
    make = lambda split, augment: ImageDataset(  # noqa: E731
        splits.paths(split), splits.labels(split), card, augment, config.seed
    )
    return make("train", config.augment), make("val", "none"), make("test", "none")


def _loader(session: _Session, dataset, shuffle: bool, epoch: int = 0):
    config = session.config
    workers = default_workers() if config.workers is None else config.workers
    shard = session.dist if shuffle else None  # training is sharded; every rank validates on everything
    return make_loader(dataset, config.batch_size, shuffle, config.seed, epoch, workers, session.setup.pin_memory,
                       shard=shard)


STAGE_CACHE_DTYPE = "float16"  # stage feature maps are large; vectors of freeze all stay float32


def _uses_prefix_cache(config: TrainConfig) -> bool:
    """Cache the frozen prefix (whole trunk for freeze all, first K stages for stages:K) when its output per
    image is fixed: no random augmentation upstream of it."""
    return config.cache_features and config.augment == "none" and has_cacheable_prefix(config.freeze)


def _prefix_stages(session: _Session) -> int | None:
    return cached_prefix_stages(session.config.freeze, len(session.model.features))


def _cache_split(session: _Session, dataset, label: str, views: int, log: Log):
    """One split's prefix outputs: vectors for freeze all (float32), feature maps for stages:K (float16,
    half the memory; their rounding is far below the training noise)."""
    from tledge.progress import progress_bar

    stages = _prefix_stages(session)
    loader = _loader(session, dataset, False)
    with progress_bar(len(loader), f"caching {label}") as bar:
        cached, engine, seconds = cache_prefix(
            session.model, stages, loader, session.setup, views=views,
            dtype="float32" if stages is None else STAGE_CACHE_DTYPE, progress=lambda step: bar.update(1), log=log,
        )
    return cached, engine, seconds


def _fit(session: _Session, log: Log, on_epoch_end) -> RunResult:
    config, model, setup = session.config, session.model, session.setup
    train_ds, val_ds, test_ds = _datasets(session)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise TledgeError("the train and val splits both need images; use more images or another --split")
    log(f"device: {setup.describe()}; train {len(train_ds)}, val {len(val_ds)}, test {len(test_ds)} images")

    cached = _uses_prefix_cache(config)
    if cached:
        train_feats, engine, train_s = _cache_split(session, train_ds, "train", config.cache_views, log)
        val_feats, _, val_s = _cache_split(session, val_ds, "val", 1, log)
        cache_s = train_s + val_s
        session.train_time_s += cache_s if session.start_epoch == 0 else 0.0
        stages = _prefix_stages(session)
        val_module = TrainableSuffix(model, stages)  # the network after the prefix, for the val pass
        what = "trunk features" if stages is None else f"outputs of the first {stages} stages"
        views = f", {config.cache_views} views per train image" if config.cache_views > 1 else ""
        log(f"freeze {config.freeze}: {what} cached in {cache_s:.1f} s ({engine}{views}); "
            "epochs now train only the rest")

    interrupted = False
    epochs_without_gain = _epochs_since_best(session)
    try:
        for epoch in range(session.start_epoch, config.epochs):
            lr = session.optimizer.param_groups[0]["lr"]
            label = f"epoch {epoch + 1}/{config.epochs}"
            reduce = lambda values: distributed.sum_across_ranks(values, session.dist, setup.device)  # noqa: E731
            if cached:
                train_stats = train_one_epoch(
                    session.train_module,
                    feature_loader(train_feats, config.batch_size, True, config.seed, epoch, session.dist,
                                   config.cache_views),
                    session.optimizer, session.criterion, setup, session.scaler,
                    lambda: set_train_mode(model, session.frozen), label, reduce,
                )
                val_stats, _, _ = evaluate(
                    val_module,
                    feature_loader(val_feats, config.batch_size, False, config.seed, epoch),
                    session.criterion, setup,
                )
            else:
                train_ds.set_epoch(epoch)
                train_stats = train_one_epoch(
                    session.train_module, _loader(session, train_ds, True, epoch), session.optimizer,
                    session.criterion, setup, session.scaler, lambda: set_train_mode(model, session.frozen), label,
                    reduce,
                )
                val_stats, _, _ = evaluate(model, _loader(session, val_ds, False), session.criterion, setup)
            if session.scheduler is not None:
                session.scheduler.step()
            session.train_time_s += train_stats.seconds + val_stats.seconds
            row = _history_row(epoch, train_stats, val_stats, lr)
            session.history.append(row)
            improved = _record_best(session, epoch, val_stats)
            epochs_without_gain = 0 if improved else epochs_without_gain + 1
            _save_epoch(session, epoch, improved)
            log(_epoch_line(row, config.epochs, improved))
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            if config.patience and epochs_without_gain >= config.patience:
                log(f"early stop: val accuracy has not improved for {config.patience} epochs")
                break
    except KeyboardInterrupt:
        interrupted = True
        if session.history:
            log(f"\ninterrupted: {session.run_dir / LAST} holds epoch {session.history[-1]['epoch']}. "
                f"Resume with: tledge train --resume {session.run_dir}")
        else:
            log("\ninterrupted before the first epoch finished: nothing saved to resume; start the run again")
    result = RunResult(session.run_dir, session.card, session.history, session.best_epoch + 1,
                       session.best_val_acc, session.train_time_s, interrupted=interrupted)
    if interrupted or session.best_state is None or not session.dist.is_main:
        return result
    return _finish(session, result, test_ds, log)


def _epochs_since_best(session: _Session) -> int:
    return 0 if session.best_epoch < 0 else len(session.history) - 1 - session.best_epoch


def _history_row(epoch: int, train: EpochStats, val: EpochStats, lr: float) -> dict:
    return {
        "epoch": epoch + 1,
        "train_loss": train.loss,
        "train_acc": train.accuracy,
        "val_loss": val.loss,
        "val_acc": val.accuracy,
        "lr": lr,
        "epoch_time_s": train.seconds + val.seconds,
        "images_per_s": train.images_per_s,
    }


def _epoch_line(row: dict, epochs: int, improved: bool) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}  "
        f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}  lr {row['lr']:.2e}  "
        f"{row['epoch_time_s']:.1f}s {row['images_per_s']:.0f} img/s{'  *best' if improved else ''}"
    )


def _record_best(session: _Session, epoch: int, val: EpochStats) -> bool:
    """Best by validation accuracy; ties go to the lower validation loss."""
    better = val.accuracy > session.best_val_acc or (
        val.accuracy == session.best_val_acc and val.loss < session.best_val_loss
    )
    if better:
        session.best_epoch, session.best_val_acc, session.best_val_loss = epoch, val.accuracy, val.loss
        session.best_state = {k: v.detach().to("cpu", copy=True) for k, v in session.model.state_dict().items()}
        session.card.best_metrics = {"val_acc": val.accuracy, "val_loss": val.loss, "epoch": epoch + 1}
    return better


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _save_epoch(session: _Session, epoch: int, improved: bool) -> None:
    if not session.dist.is_main:
        return
    run_dir = session.run_dir
    reports.write_history_csv(run_dir / HISTORY_FILE, session.history)
    if improved:
        save_checkpoint(run_dir / BEST, {"card": session.card.to_dict(), "model": session.best_state,
                                         "epoch": epoch, "config": session.config.to_dict()})
        session.card.save(run_dir / CARD_FILE)
    save_checkpoint(run_dir / LAST, {
        "card": session.card.to_dict(),
        "config": session.config.to_dict(),
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict() if session.scheduler is not None else {},
        "scaler": session.scaler.state_dict(),
        "epoch": epoch,
        "best_epoch": session.best_epoch,
        "best_val_acc": session.best_val_acc,
        "best_val_loss": session.best_val_loss,
        "train_time_s": session.train_time_s,
        "history": session.history,
        "rng": _rng_state(),
    })


def _finish(session: _Session, result: RunResult, test_ds, log: Log) -> RunResult:
    """Restore the best epoch, evaluate it on the test split, write metrics, plots and the diagnosis."""
    from tledge.train.evaluate import evaluate_and_report

    model, run_dir = session.model, session.run_dir
    model.load_state_dict(session.best_state)
    diagnosis = reports.diagnose_fit(session.history, session.card.num_classes)
    result.diagnosis = diagnosis
    log(f"fit: {diagnosis['verdict']} - {diagnosis['reason']}")
    if len(test_ds) == 0:
        log("no test split: skipping test metrics")
        metrics = {}
    else:
        metrics = evaluate_and_report(model, session.card, test_ds, run_dir, session.setup,
                                      session.config.batch_size, log)
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
    log(_summary_table(session, metrics))
    log(f"results in {run_dir}  (next: tledge export {run_dir})")
    result.test_metrics = metrics
    return result


def _summary_table(session: _Session, metrics: dict) -> str:
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
