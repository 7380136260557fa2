"""One epoch of training and one pass of evaluation: plain functions, no CLI state.

Both take any module and any loader of (inputs, labels), so the same code trains a full network on
images, a bare head on cached features, and the fake-quantized copy of quantization-aware fine-tuning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from tledge.progress import progress_bar
from tledge.models.device import DeviceSetup


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _to_device(inputs: torch.Tensor, labels: torch.Tensor, setup: DeviceSetup):
    inputs = inputs.to(setup.device, non_blocking=setup.pin_memory)
    if setup.channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, labels.to(setup.device, non_blocking=setup.pin_memory)


def train_one_epoch(
    module: nn.Module,
    loader,
    optimizer,
    criterion,
    setup: DeviceSetup,
    scaler,
    set_mode: Callable[[], None],
    label: str = "train",
    reduce: Callable[[list[float]], list[float]] | None = None,
    step_scheduler=None,
) -> EpochStats:
    """One pass over `loader`. `reduce` sums (loss, correct, seen) across torchrun ranks.

    `step_scheduler` is stepped after every optimizer step: a schedule per step (QAT's cosine); training
    steps its own scheduler once per epoch instead."""
    set_mode()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = progress_bar(len(loader), label, unit="batch")
    start = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    for inputs, labels in loader:
        inputs, labels = _to_device(inputs, labels, setup)
        optimizer.zero_grad(set_to_none=True)
        with setup.autocast():
            logits = module(inputs)
            loss = criterion(logits, labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if step_scheduler is not None:
            step_scheduler.step()
        batch = labels.shape[0]
        loss_sum += float(loss.detach()) * batch
        correct += int((logits.detach().argmax(1) == labels).sum())
        seen += batch
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", lr=f"{lr:.2e}", refresh=False)
        bar.update(1)
    bar.close()
    if setup.is_cuda:
        torch.cuda.synchronize(setup.device)
    if reduce is not None:
        loss_sum, correct, seen = reduce([loss_sum, float(correct), float(seen)])
        seen = int(seen)
    return EpochStats(loss_sum / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start)


@torch.inference_mode()
def evaluate(module: nn.Module, loader, criterion, setup: DeviceSetup) -> tuple[EpochStats, np.ndarray, np.ndarray]:
    """Loss/accuracy plus all logits and labels (numpy) for metrics and plots."""
    module.eval()
    start = time.perf_counter()
    all_logits, all_labels = [], []
    loss_sum = 0.0
    for inputs, labels in loader:
        inputs, labels = _to_device(inputs, labels, setup)
        with setup.autocast():
            logits = module(inputs)
        logits = logits.float()
        loss_sum += float(criterion(logits, labels)) * labels.shape[0]
        all_logits.append(logits.cpu().numpy())
        all_labels.append(labels.cpu().numpy())
    logits_np = np.concatenate(all_logits) if all_logits else np.zeros((0, 0), np.float32)
    labels_np = np.concatenate(all_labels) if all_labels else np.zeros((0,), np.int64)
    seen = int(labels_np.shape[0])
    correct = int((logits_np.argmax(1) == labels_np).sum()) if seen else 0
    stats = EpochStats(loss_sum / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start)
    return stats, logits_np, labels_np
