"""Checks of a TrainConfig that need the registries (model name, freeze policy, weights file, input size),
run before any run folder exists. Ranges are checked by TrainConfig itself; these need torch."""

from __future__ import annotations

from pathlib import Path

from tledge.errors import TledgeError
from tledge.training.config import TrainConfig


def check_names(config: TrainConfig) -> None:
    """Known backbone, well-formed freeze policy, weights that exist."""
    from tledge.models.backbones import get_spec
    from tledge.training.freeze import parse_policy

    get_spec(config.model)
    parse_policy(config.freeze)
    if config.weights not in ("imagenet", "none") and not Path(config.weights).is_file():
        raise TledgeError(f"--weights {config.weights!r}: file not found (expected imagenet, none or a file)")
    if config.weights not in ("imagenet", "none"):
        from tledge.checkpoint import not_a_checkpoint

        kind = not_a_checkpoint(config.weights)
        if kind is not None:
            raise TledgeError(f"--weights {config.weights!r} is {kind}, not a weights file; give imagenet, none, a "
                              "torchvision .pth state dict or a tledge best.pt")


def check_model(config: TrainConfig) -> None:
    """Build the model on the meta device, apply the freeze policy, push one image of img_size through:
    no memory, no weights, and a too-small input or too-deep freeze fails here, not at epoch 1."""
    import torch

    from tledge.models.backbones import create_model
    from tledge.training.freeze import apply_freeze

    with torch.device("meta"):
        model = create_model(config.model, 2, "none", config.head, config.dropout, **config.arch_kwargs)
        apply_freeze(model, config.freeze)
        try:
            model.eval()(torch.empty(1, 3, config.img_size, config.img_size))
        except (RuntimeError, ValueError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TledgeError(f"{config.model} cannot take {config.img_size} px images ({reason}); "
                              f"use a larger img_size") from None


def check_config(config: TrainConfig) -> None:
    """Everything about a training config that can be known before reading the data."""
    from tledge.paths import check_outputs_apart

    check_outputs_apart([("--project", config.project)], [("the DATA folder", config.data),
                                                          ("--weights", config.weights)])
    check_names(config)
    check_model(config)
