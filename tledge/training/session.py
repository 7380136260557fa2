"""What one training run holds while it trains, built fresh from the config or restored from last.pt,
and saved back to last.pt/best.pt after every epoch (the checkpoint's keys are written and read here).

Resuming restores the model, optimizer, scheduler, scaler, RNG state and history, so a resumed run gives
bit-for-bit the same result as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tledge.card import ModelCard
from tledge.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from tledge.splits import Splits
from tledge.training import distributed, reports
from tledge.models.backbones import create_model
from tledge.training.config import TrainConfig
from tledge.models.device import DeviceSetup, resolve_device
from tledge.training.freeze import FreezeResult, apply_freeze
from tledge.training.optim import make_optimizer, make_scheduler
from tledge.training.prefix import TrainableSuffix, cached_prefix_stages, has_cacheable_prefix
from tledge.training.rundir import CARD_FILE, HISTORY_FILE

log = logging.getLogger(__name__)


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
class TrainSession:
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
    feature_cache: Path | None = None  # a folder of prefix outputs shared between runs (tledge.training.trunk_cache)


def weights_origin(weights: str) -> str:
    if weights in ("imagenet", "none"):
        return weights
    return f"file:{Path(weights).name}"


def device_type(config: TrainConfig) -> str:
    return "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu"


def uses_prefix_cache(config: TrainConfig) -> bool:
    """Cache the frozen prefix (whole trunk for freeze all, first K stages for stages:K) when its output per
    image is fixed: no random augmentation upstream of it."""
    return config.cache_features and config.augment == "none" and has_cacheable_prefix(config.freeze)


def prefix_stages(session: TrainSession) -> int | None:
    return cached_prefix_stages(session.config.freeze, len(session.model.features))


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


def _assemble(config, run_dir, splits, card, weights, info=distributed.SINGLE) -> TrainSession:
    torch.manual_seed(config.seed)
    model = create_model(config.model, card.num_classes, weights, config.head, config.dropout, **config.arch_kwargs)
    frozen = apply_freeze(model, config.freeze)
    log.info(frozen.summary)
    device = config.device
    if info.enabled and device_type(config) == "cuda":
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(info.local_rank)
    setup = resolve_device(device, config.amp)
    if info.enabled and config.sync_bn and setup.is_cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        frozen = apply_freeze(model, config.freeze)  # the converted BN layers are new modules
    model = model.to(setup.device)
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.learning_rate(), config.weight_decay,
                               config.momentum)
    scheduler = make_scheduler(
        config.scheduler, optimizer, config.epochs, config.step_size, config.gamma, config.warmup_epochs
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    session = TrainSession(config, run_dir, splits, card, model, frozen, setup, optimizer, scheduler,
                           setup.grad_scaler(), criterion, info)
    session.train_module = _wrap_for_training(session)
    return session


def _wrap_for_training(session: TrainSession) -> nn.Module:
    """The module a training step calls: the part after the cached frozen prefix (the head alone for
    freeze all), the model otherwise; wrapped in DistributedDataParallel under torchrun."""
    module = session.model
    if uses_prefix_cache(session.config):
        module = TrainableSuffix(session.model, prefix_stages(session))
    if not session.dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [session.setup.device.index] if session.setup.is_cuda else None
    return DistributedDataParallel(module, device_ids=ids)


def new_session(config: TrainConfig, run_dir: Path, splits: Splits, fingerprint: str,
                info: distributed.DistInfo) -> TrainSession:
    card = _build_card(config, splits.class_names, fingerprint)
    return _assemble(config, run_dir, splits, card, config.weights, info)


def resume_session(run_dir: Path, info: distributed.DistInfo) -> TrainSession:
    state = load_checkpoint(run_dir / LAST)
    config = TrainConfig.from_dict(state["config"])
    card = ModelCard.from_dict(state["card"])
    session = _assemble(config, run_dir, Splits.load(run_dir), card, "none", info)
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
    log.info(f"resuming {run_dir} at epoch {session.start_epoch + 1}/{config.epochs}")
    return session


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_epoch(session: TrainSession, epoch: int, improved: bool) -> None:
    """history.csv, best.pt (when this epoch is the best so far) and last.pt, from rank 0 only."""
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
