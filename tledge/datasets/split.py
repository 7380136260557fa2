"""Seeded, stratified splits: train/val/test shares per class, and k folds for cross-validation.

Splits are stratified per class, so a rare class always lands in val and test, and byte-identical
copies move together, so a duplicate cannot leak across the splits tledge makes itself.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from tledge.errors import TledgeError
from tledge.splits import SPLIT_NAMES
from tledge.datasets.scan import ScannedImage


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """(train, val, test) shares as floats: three non-negative numbers summing to 1, train above 0."""
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise TledgeError(f"split ratios must be 3 numbers (train, val, test), got {ratios!r}") from None
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values):
        raise TledgeError(f"split ratios must be 3 non-negative numbers (train, val, test), got {list(ratios)}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise TledgeError(f"split ratios must sum to 1, got {list(values)} (sum {sum(values):g})")
    if values[0] <= 0:
        raise TledgeError(f"the train ratio must be above 0, got {list(values)}")
    return values


def assign_splits(
    readable: list[ScannedImage], sources: dict[str, Path], ratios: tuple[float, float, float], seed: int
) -> dict[str, list[ScannedImage]]:
    """Keep existing split folders; carve the missing val/test out of train with their share of ratios."""
    train_r, val_r, test_r = ratios
    assigned = {split: [f for f in readable if f.source == split] for split in SPLIT_NAMES}
    carve_val = 0.0 if "val" in sources else val_r
    carve_test = 0.0 if "test" in sources else test_r
    share = train_r + carve_val + carve_test
    if carve_val == 0 and carve_test == 0:
        return assigned
    parts = _stratified_split(assigned["train"], (train_r / share, carve_val / share, carve_test / share), seed)
    assigned["train"] = parts[0]
    assigned["val"] += parts[1]
    assigned["test"] += parts[2]
    return assigned


def _stratified_split(
    images: list[ScannedImage], ratios: tuple[float, float, float], seed: int
) -> tuple[list[ScannedImage], list[ScannedImage], list[ScannedImage]]:
    """Split each class by the ratios (seeded per class name, so one class's files never move another's).

    Byte-identical copies within a class move together, so a duplicate cannot leak across our own splits.
    """
    out: tuple[list, list, list] = ([], [], [])
    by_class: dict[str, list[ScannedImage]] = {}
    for f in sorted(images, key=lambda f: f.relpath):
        by_class.setdefault(f.class_name, []).append(f)
    for name, members in sorted(by_class.items()):
        groups: dict[str, list[ScannedImage]] = {}
        for f in members:
            groups.setdefault(f.sha1 or f.relpath, []).append(f)
        units = list(groups.values())  # insertion order follows the sorted relpaths
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        order = rng.permutation(len(units))
        n_train, n_val, n_test = split_counts(len(members), ratios)
        targets = (n_val, n_test)
        filled = [0, 0]
        for unit_index in order:
            unit = units[unit_index]
            for part in (0, 1):
                if filled[part] < targets[part]:
                    out[part + 1].extend(unit)
                    filled[part] += len(unit)
                    break
            else:
                out[0].extend(unit)
    return tuple(sorted(part, key=lambda f: f.relpath) for part in out)  # type: ignore[return-value]


def split_counts(n: int, ratios: Sequence[float]) -> tuple[int, int, int]:
    """How many of n images go to (train, val, test): rounded, at least 1 in val and test when n >= 3
    (and that split's ratio is above 0), never fewer than 1 in train."""
    _, val_r, test_r = ratios
    n_val = int(np.floor(n * val_r + 0.5))
    n_test = int(np.floor(n * test_r + 0.5))
    if n >= 3:
        n_val = max(n_val, 1) if val_r > 0 else 0
        n_test = max(n_test, 1) if test_r > 0 else 0
    while n_val + n_test > n - 1 and (n_val or n_test):
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_kfold(labels: Sequence[int], k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_idx, val_idx) pairs over positions in `labels`; each class dealt round-robin to folds.

    Each class is shuffled (seeded) and dealt across folds, continuing the deal from where the previous
    class stopped, so folds differ in size by at most one image and every fold sees every class.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise TledgeError("k-fold needs a non-empty list of labels")
    classes, counts = np.unique(labels, return_counts=True)
    if int(k) != k or k < 2:
        raise TledgeError(f"k-fold needs k >= 2 folds, got {k}")
    k = int(k)
    if k > counts.min():
        rare = classes[counts.argmin()]
        raise TledgeError(
            f"k-fold with k={k} needs at least {k} images per class; class {rare} has {counts.min()}"
        )
    rng = np.random.default_rng(seed)
    fold_of = np.empty(labels.size, dtype=np.int64)
    next_fold = 0
    for cls in classes:
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold_of[members] = (next_fold + np.arange(members.size)) % k
        next_fold = (next_fold + members.size) % k
    positions = np.arange(labels.size)
    return [(positions[fold_of != fold], positions[fold_of == fold]) for fold in range(k)]
