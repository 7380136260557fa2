"""Rebuild a trained model from a tledge checkpoint or run folder: the card names the architecture, the
backbone registry builds it, the checkpoint fills the weights."""

from __future__ import annotations

from pathlib import Path

from tledge.card import ModelCard
from tledge.checkpoint import load_checkpoint, resolve_checkpoint
from tledge.errors import TledgeError


def load_model(path: str | Path, device: str = "cpu"):
    """(model in eval mode, card) from a tledge checkpoint or run folder."""
    from tledge.train.backbones import model_from_card  # imports torch

    ckpt_path = resolve_checkpoint(path)
    state = load_checkpoint(ckpt_path)
    if "card" not in state or "model" not in state:
        raise TledgeError(f"{ckpt_path} is not a tledge checkpoint (no model card); train it with `tledge train`")
    card = ModelCard.from_dict(state["card"])
    model = model_from_card(card)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise TledgeError(f"{ckpt_path}: weights do not fit {card.arch} ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), card
