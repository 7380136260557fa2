"""Rebuild a trained model from a tledge checkpoint or run folder: the card names the architecture, the
backbone registry builds it, the checkpoint fills the weights."""

from __future__ import annotations

import json
from pathlib import Path

from tledge.card import ModelCard
from tledge.checkpoint import load_checkpoint, resolve_checkpoint
from tledge.errors import TledgeError


def load_model(path: str | Path, device: str = "cpu"):
    """(model in eval mode, card) from a tledge checkpoint or run folder."""
    from tledge.models.backbones import model_from_card  # imports torch

    ckpt_path = resolve_checkpoint(path)
    state = load_checkpoint(ckpt_path)
    if "card" not in state or "model" not in state:
        raise TledgeError(f"{ckpt_path} is not a tledge checkpoint (no model card); train it with `tledge train`")
    card = ModelCard.from_dict(state["card"], ckpt_path)
    _check_run_classes(ckpt_path, card)
    model = model_from_card(card)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise TledgeError(f"{ckpt_path}: weights do not fit {card.arch} ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), card


def _check_run_classes(ckpt_path: Path, card: ModelCard) -> None:
    """A checkpoint inside a run folder has that run's classes (splits.json): a best.pt copied in from
    another run is refused instead of exported, checked and benched with the wrong labels."""
    from tledge.splits import SPLITS_FILE

    splits = ckpt_path.parent / SPLITS_FILE
    if not splits.is_file():
        return
    try:
        names = json.loads(splits.read_text())["class_names"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # not readable as a run's splits: nothing to compare with
    if list(names) != list(card.class_names):
        raise TledgeError(f"{ckpt_path}: its model card names {card.num_classes} classes "
                          f"({', '.join(card.class_names)}) but {splits} has {len(names)} "
                          f"({', '.join(map(str, names))}): not this run's checkpoint; copy back the run's own best.pt "
                          "or retrain")
