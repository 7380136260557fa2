"""Optimizers and learning-rate schedules, chosen by name from small tables (no if/elif chains).

Schedules step once per epoch; `cosine` warms up linearly for `warmup_epochs` then follows a cosine
down to `min_lr_ratio` × lr.
"""

from __future__ import annotations

import math

import torch

from tledge.errors import TledgeError

OPTIMIZERS = {
    "adam": lambda params, lr, wd, momentum: torch.optim.Adam(params, lr=lr, weight_decay=wd),
    "adamw": lambda params, lr, wd, momentum: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd, momentum: torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=wd
    ),
    "adadelta": lambda params, lr, wd, momentum: torch.optim.Adadelta(params, lr=lr, weight_decay=wd),
}
SCHEDULERS = ("none", "step", "cosine")


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    """Only parameters that require grad are handed over, so frozen layers cost no optimizer state."""
    if name not in OPTIMIZERS:
        raise TledgeError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise TledgeError("nothing to train: every parameter is frozen")
    return OPTIMIZERS[name](trainable, lr, weight_decay, momentum)


def make_scheduler(
    name: str,
    optimizer,
    epochs: int,
    step_size: int = 7,
    gamma: float = 0.1,
    warmup_epochs: int = 0,
    min_lr_ratio: float = 0.0,
):
    """A LambdaLR/StepLR stepped after each epoch, or None for a constant rate."""
    if name not in SCHEDULERS:
        raise TledgeError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    if name == "none":
        return None
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, step_size), gamma=gamma)

    def cosine(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        span = max(1, epochs - warmup_epochs)
        progress = min(1.0, (epoch - warmup_epochs) / span)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
