"""Shared pytest fixtures. Keep images tiny: the CI box has two cores."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import pytest


class LogLines:
    """What tledge logged during a test, one line per record as the CLI prints it (`warning: …` for problems)."""

    def __init__(self, caplog):
        self._caplog = caplog

    def _lines(self) -> list[str]:
        from tledge.logs import LineFormatter

        formatter = LineFormatter()
        return [formatter.format(r) for r in self._caplog.records if r.name.startswith("tledge")]

    def __iter__(self):
        return iter(self._lines())

    def __len__(self) -> int:
        return len(self._lines())

    def __getitem__(self, index):
        return self._lines()[index]

    def __contains__(self, line) -> bool:
        return line in self._lines()

    def __eq__(self, other) -> bool:
        return self._lines() == list(other)


@pytest.fixture
def log_lines(caplog):
    """The library's log lines (every level) of this test, in order."""
    caplog.set_level(logging.DEBUG, logger="tledge")
    return LogLines(caplog)


# Distinct RGB colours, one per class (cycled when there are more classes).
CLASS_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40), (200, 50, 210), (40, 210, 210)]


def _class_image(colour_rgb, size: int, rng: np.random.Generator) -> np.ndarray:
    """A learnable image: a coloured square at a random place on a noisy grey background (BGR for cv2)."""
    image = rng.integers(60, 140, size=(size, size, 3), dtype=np.uint8)
    side = max(4, size // 2)
    top, left = rng.integers(0, size - side + 1, size=2)
    image[top : top + side, left : left + side] = colour_rgb
    return np.ascontiguousarray(image[:, :, ::-1])


def _write_odd_files(folder: Path, size: int, rng: np.random.Generator) -> None:
    """Readable oddities (gray, RGBA, 16-bit PNG) and unreadable ones (truncated JPEG, empty, text)."""
    base = _class_image((128, 128, 128), size, rng)
    cv2.imwrite(str(folder / "odd_gray.png"), cv2.cvtColor(base, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "odd_rgba.png"), cv2.cvtColor(base, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "odd_16bit.png"), base.astype(np.uint16) * 257)
    ok, jpeg = cv2.imencode(".jpg", base)
    (folder / "bad_truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (folder / "bad_empty.jpg").write_bytes(b"")
    (folder / "bad_text.jpg").write_text("this is not an image\n")


@pytest.fixture
def make_image_folder(tmp_path):
    """Factory that writes a small labelled image folder and returns its root.

    make_image_folder(
        root=None,                 # default: a fresh folder under tmp_path
        classes=("red", "green", "blue"),
        per_class=6,               # int, or {class: count} for imbalanced data
        size=32,                   # square images of size×size px
        splits=None,               # None: ImageFolder root/<class>/<img>;
                                   # a list like ["train", "test"] (each gets per_class images) or a
                                   # dict {"train": 6, "seg_test": 2} (count per class): root/<split>/<class>/<img>
        ext=".png",                # ".png" or ".jpg"
        odd_files=False,           # also write, into the first class folder (of the first split):
                                   #   readable: odd_gray.png, odd_rgba.png, odd_16bit.png
                                   #   unreadable: bad_truncated.jpg, bad_empty.jpg, bad_text.jpg
        seed=0,
    ) -> Path

    Each image is a class-coloured square at a random position on a noisy background (learnable, and
    every file's bytes differ). Files are named <class>_<split>_<i><ext>.
    """
    counter = {"n": 0}

    def make(
        root: str | Path | None = None,
        classes: Sequence[str] = ("red", "green", "blue"),
        per_class: int | Mapping[str, int] = 6,
        size: int = 32,
        splits: Sequence[str] | Mapping[str, int] | None = None,
        ext: str = ".png",
        odd_files: bool = False,
        seed: int = 0,
    ) -> Path:
        if root is None:
            counter["n"] += 1
            root = tmp_path / f"images{counter['n']}"
        root = Path(root)
        if splits is None:
            layout = {"": None}
        elif isinstance(splits, Mapping):
            layout = dict(splits)
        else:
            layout = {name: None for name in splits}
        rng = np.random.default_rng(seed)
        for split_index, (split, split_count) in enumerate(layout.items()):
            for class_index, name in enumerate(classes):
                folder = root / split / name if split else root / name
                folder.mkdir(parents=True, exist_ok=True)
                if split_count is not None:
                    count = split_count
                elif isinstance(per_class, Mapping):
                    count = per_class[name]
                else:
                    count = per_class
                colour = CLASS_COLOURS[class_index % len(CLASS_COLOURS)]
                for i in range(count):
                    image = _class_image(colour, size, rng)
                    cv2.imwrite(str(folder / f"{name}_{split or 'all'}_{i:03d}{ext}"), image)
                if odd_files and split_index == 0 and class_index == 0:
                    _write_odd_files(folder, size, rng)
        return root

    return make
