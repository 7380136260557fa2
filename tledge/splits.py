"""The run's file lists (splits.json): which images are train, val and test, so eval, export's
calibration and parity checks, and bench all use the same images. No torch needed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tledge.atomic import atomic_write_bytes
from tledge.errors import TledgeError

SPLITS_FILE = "splits.json"
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """Image paths (relative to `root`) with class indices, per split."""

    root: str
    class_names: list[str]
    items: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # unreadable files, relative to root

    def paths(self, split: str) -> list[Path]:
        """The split's image paths; a data folder that is gone (moved, renamed, unmounted) is one error that says
        which options give another one, not every image counted as unreadable."""
        items = self.items.get(split, [])
        if items and not Path(self.root).is_dir():
            raise TledgeError(f"the images of this run's {split} split were in {self.root}, which is gone (moved, "
                              "renamed or unmounted?); move it back, or give a labelled folder instead: "
                              "--parity-data DIR / --calib-data DIR (export), DATA (tledge eval RUN DATA), "
                              "--data DIR (bench)")
        return [Path(self.root) / rel for rel, _ in items]

    def labels(self, split: str) -> list[int]:
        return [label for _, label in self.items.get(split, [])]

    def save(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / SPLITS_FILE
        data = {
            "root": str(Path(self.root).resolve()),
            "class_names": self.class_names,
            "skipped": self.skipped,
            **{name: [[rel, int(label)] for rel, label in self.items.get(name, [])] for name in SPLIT_NAMES},
        }
        atomic_write_bytes(path, json.dumps(data, indent=1).encode())
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> "Splits":
        path = Path(run_dir) / SPLITS_FILE
        if not path.is_file():
            raise TledgeError(f"{run_dir} has no {SPLITS_FILE}; is it a tledge run folder?")
        data = json.loads(path.read_text())
        items = {name: [(rel, int(label)) for rel, label in data.get(name, [])] for name in SPLIT_NAMES}
        return cls(data["root"], list(data["class_names"]), items, list(data.get("skipped", [])))
