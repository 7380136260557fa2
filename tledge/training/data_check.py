"""Has the data changed since a run started? A resume trains on the file lists saved in splits.json; if the
data folder changed (files added, removed or edited: the dataset fingerprint differs), the resumed model
would no longer match its card, so the resume is refused unless forced.
"""

from __future__ import annotations

import logging
import json
from pathlib import Path

from tledge.checkpoint import LAST, load_checkpoint
from tledge.errors import TledgeError
from tledge.training.config import TrainConfig
from tledge.training.rundir import CARD_FILE

log = logging.getLogger(__name__)


def recorded_fingerprint(run_dir: Path) -> str:
    """The dataset fingerprint the run started with: from last.pt, a fold's last.pt, or card.json."""
    for path in [run_dir / LAST, *sorted(run_dir.glob(f"fold*/{LAST}"))]:
        if path.is_file():
            return str(load_checkpoint(path).get("card", {}).get("dataset_fingerprint", ""))
    card = run_dir / CARD_FILE
    if card.is_file():
        return str(json.loads(card.read_text()).get("dataset_fingerprint", ""))
    return ""


def check_data_unchanged(run_dir: Path, config: TrainConfig) -> str:
    """Rescan the data folder; refuse (TledgeError) when its fingerprint differs from the recorded one.

    Returns the current fingerprint ("" when nothing was recorded, e.g. runs made before fingerprints).
    """
    from tledge.datasets.folders import build_splits

    recorded = recorded_fingerprint(run_dir)
    if not recorded:
        return ""
    _, report = build_splits(config.data, tuple(config.split), config.seed)
    if report.fingerprint != recorded:
        raise TledgeError(
            f"the data in {config.data} changed since {run_dir} started (fingerprint {recorded[:12]} → "
            f"{report.fingerprint[:12]}); start a new run, or add --force to resume on the files in splits.json")
    return report.fingerprint
