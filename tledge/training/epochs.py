"""The epochs of one run: each trains one pass (tledge.training.loop), validates, keeps the best weights,
saves last.pt, logs a line, and stops early when validation stops improving.

Data order and augmentation are seeded per epoch, so a resumed run sees the batches it would have seen.
With a frozen prefix and no augmentation the prefix runs once (its outputs cached) and the epochs train
only the rest.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from tledge.checkpoint import LAST
from tledge.errors import WriteError
from tledge.training import distributed
from tledge.training.dataset import ImageDataset, make_loader
from tledge.training.features import feature_loader
from tledge.training.freeze import set_train_mode
from tledge.training.loop import EpochStats, evaluate, train_one_epoch
from tledge.training.prefix import TrainableSuffix, cache_prefix
from tledge.training.session import RunResult, TrainSession, prefix_stages, save_epoch, uses_prefix_cache

log = logging.getLogger(__name__)

STAGE_CACHE_DTYPE = "float16"  # stage feature maps are large; vectors of freeze all stay float32


def make_datasets(session: TrainSession):
    """(train, val, test) datasets of the run's splits; only train is augmented."""
    config, splits, card = session.config, session.splits, session.card
    make = lambda split, augment: ImageDataset(  # noqa: E731
        splits.paths(split), splits.labels(split), card, augment, config.seed
    )
    return make("train", config.augment), make("val", "none"), make("test", "none")


def _loader(session: TrainSession, dataset, shuffle: bool, epoch: int = 0):
    config = session.config
    workers = config.loader_workers()
    shard = session.dist if shuffle else None  # training is sharded; every rank validates on everything
    return make_loader(dataset, config.batch_size, shuffle, config.seed, epoch, workers, session.setup.pin_memory,
                       shard=shard)


def _cache_split(session: TrainSession, dataset, label: str, views: int):
    """One split's prefix outputs: vectors for freeze all (float32), feature maps for stages:K (float16,
    half the memory; their rounding is far below the training noise)."""
    from tledge.progress import progress_bar

    stages = prefix_stages(session)
    dtype = "float32" if stages is None else STAGE_CACHE_DTYPE

    def compute():
        loader = _loader(session, dataset, False)
        with progress_bar(len(loader), f"caching {label}") as bar:
            return cache_prefix(session.model, stages, loader, session.setup, views=views, dtype=dtype,
                                progress=lambda step: bar.update(1))

    if session.feature_cache is None:
        return compute()
    from tledge.training import trunk_cache

    key = trunk_cache.feature_key(session.model, stages, dataset, views, dtype, session.setup,
                                  session.card.dataset_fingerprint)
    started = time.perf_counter()
    cached, engine, seconds, reused = trunk_cache.shared_features(session.feature_cache, key, compute)
    if reused:  # this run's cost is the wait and the load, not the first run's computing
        log.info(f"{label}: frozen-prefix outputs shared from {session.feature_cache / key}.pt")
        return cached, f"{engine}, shared", time.perf_counter() - started
    return cached, engine, seconds


def run_epochs(session: TrainSession, train_ds, val_ds,
               on_epoch_end: Callable[[int, dict], None] | None) -> RunResult:
    """Train from session.start_epoch to the last epoch (or early stop, or Ctrl-C: then `interrupted`)."""
    config, model, setup = session.config, session.model, session.setup
    cached = uses_prefix_cache(config)
    if cached:
        train_feats, engine, train_s = _cache_split(session, train_ds, "train", config.cache_views)
        val_feats, _, val_s = _cache_split(session, val_ds, "val", 1)
        cache_s = train_s + val_s
        session.train_time_s += cache_s if session.start_epoch == 0 else 0.0
        stages = prefix_stages(session)
        val_module = TrainableSuffix(model, stages)  # the network after the prefix, for the val pass
        what = "trunk features" if stages is None else f"outputs of the first {stages} stages"
        views = f", {config.cache_views} views per train image" if config.cache_views > 1 else ""
        log.info(f"freeze {config.freeze}: {what} cached in {cache_s:.1f} s ({engine}{views}); "
                 "epochs now train only the rest")

    interrupted = False
    epochs_without_gain = _epochs_since_best(session)
    saved = session.start_epoch  # epochs that last.pt holds
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
            save_epoch(session, epoch, improved)
            saved = epoch + 1
            log.info(_epoch_line(row, config.epochs, improved))
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            if config.patience and epochs_without_gain >= config.patience:
                log.info(f"early stop: val accuracy has not improved for {config.patience} epochs")
                break
    except KeyboardInterrupt:
        interrupted = True
        if session.history:
            log.warning(f"\ninterrupted: {session.run_dir / LAST} holds epoch {session.history[-1]['epoch']}. "
                        f"Resume with: tledge train --resume {session.run_dir}")
        else:
            log.warning("\ninterrupted before the first epoch finished: nothing saved to resume; start the run again")
    except WriteError:  # disk full, I/O error: say what the run folder holds before the one-line error
        if saved:
            log.warning(f"\n{session.run_dir / LAST} holds epoch {saved}; once the disk is fixed, resume with: "
                        f"tledge train --resume {session.run_dir}")
        raise
    return RunResult(session.run_dir, session.card, session.history, session.best_epoch + 1,
                     session.best_val_acc, session.train_time_s, interrupted=interrupted)


def _epochs_since_best(session: TrainSession) -> int:
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


def _record_best(session: TrainSession, epoch: int, val: EpochStats) -> bool:
    """Best by validation accuracy; ties go to the lower validation loss."""
    better = val.accuracy > session.best_val_acc or (
        val.accuracy == session.best_val_acc and val.loss < session.best_val_loss
    )
    if better:
        session.best_epoch, session.best_val_acc, session.best_val_loss = epoch, val.accuracy, val.loss
        session.best_state = {k: v.detach().to("cpu", copy=True) for k, v in session.model.state_dict().items()}
        session.card.best_metrics = {"val_acc": val.accuracy, "val_loss": val.loss, "epoch": epoch + 1}
    return better
