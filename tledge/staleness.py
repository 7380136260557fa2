"""Stale artifacts: an export/ file made from an older best.pt (e.g. after retraining with --exist-ok).

`tledge export` records the sha256 of the checkpoint it read in every artifact's card
(`card.checkpoint_sha256`); predict and bench compare it with the run's best.pt of today.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tledge.card import ModelCard

BEST = "best.pt"  # tledge.checkpoint.BEST, repeated here so the runtime needs no torch import
CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def run_checkpoint_of(artifact: str | Path) -> Path | None:
    """RUN/best.pt for an artifact in RUN/export/ (the default export folder), else None."""
    artifact = Path(artifact)
    best = artifact.parent.parent / BEST
    return best if artifact.parent.name == "export" and best.is_file() else None


def stale_reason(artifact: str | Path, card: ModelCard) -> str:
    """Why `artifact` does not match its run's best.pt, or "" when it matches (or cannot be told)."""
    recorded = getattr(card, "checkpoint_sha256", "")
    best = run_checkpoint_of(artifact)
    if not recorded or best is None:
        return ""
    current = file_sha256(best)
    if current == recorded:
        return ""
    return (f"{Path(artifact).name} was exported from another checkpoint than {best} "
            f"(sha256 {recorded[:12]} vs {current[:12]}); re-export it: tledge export {best.parent}")
