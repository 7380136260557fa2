"""Data discovery for `tledge train` and for evaluation: the two entry points over a data folder.

`build_splits` finds the classes (tledge.datasets.layout), checks every image once
(tledge.datasets.scan), splits seeded and stratified (tledge.datasets.split) and says what it found
(tledge.datasets.report). `read_labelled_folder` is the one labelled-folder reader evaluation, parity
and bench use, with the same listing and scanning rules as training. No torch needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from tledge.errors import TledgeError
from tledge.splits import SPLIT_NAMES, Splits
from tledge.datasets.layout import (
    all_split_names,
    check_every_class_readable,
    check_folder,
    check_some_image,
    class_folders,
    class_names_for,
    find_split_folders,
    list_class_images,
)
from tledge.datasets.report import (
    DataReport,
    find_duplicates,
    warn_empty_splits,
    warn_ignored_folders,
    warn_imbalance,
)
from tledge.datasets.scan import dataset_fingerprint, scan_images
from tledge.datasets.split import assign_splits, check_ratios


def build_splits(
    data_dir: str | Path, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[Splits, DataReport]:
    """Scan DATA, split it (stratified, seeded) and report what was found.

    Split folders that exist are used as they are; missing val/test are carved out of train with the
    matching share of `ratios` (only train: 80/10/10 by default; train+test: val = val/(train+val)).
    """
    ratios = check_ratios(ratios)
    root = check_folder(data_dir)
    sources = find_split_folders(root)
    layout = "image folder" if sources is None else "split folders: " + ", ".join(p.name for p in sources.values())
    if sources is None:
        sources = {"train": root}
    class_names = class_names_for(sources)

    files = [f for name, folder in sources.items() for f in list_class_images(folder, class_names, root, name)]
    check_some_image(root, files)
    scanned = scan_images(files)
    readable = [f for f in scanned if not f.problem]
    warnings: list[str] = []
    check_every_class_readable(readable, class_names, sources, warnings)

    assigned = assign_splits(readable, sources, ratios, seed)
    class_index = {name: i for i, name in enumerate(class_names)}
    items = {
        split: [(f.relpath, class_index[f.class_name]) for f in assigned[split]] for split in SPLIT_NAMES
    }
    skipped = [(f.relpath, f.problem) for f in scanned if f.problem]
    splits = Splits(str(root), list(class_names), items, [rel for rel, _ in skipped])

    report = DataReport(str(root), layout, list(class_names), skipped=skipped, warnings=warnings)
    report.counts = {
        split: {name: sum(1 for f in assigned[split] if f.class_name == name) for name in class_names}
        for split in SPLIT_NAMES
    }
    report.fingerprint = dataset_fingerprint(readable)
    find_duplicates(assigned, report)
    warn_imbalance(report)
    warn_empty_splits(report, sources, ratios)
    warn_ignored_folders(root, sources, report)
    return splits, report


def read_labelled_folder(
    data_dir: str | Path, class_names: Sequence[str]
) -> tuple[list[tuple[Path, int]], list[tuple[str, str]]]:
    """Read an ImageFolder to evaluate it against a trained model's classes.

    Returns ([(absolute path, class index)], [(relpath, reason) skipped]). A class folder the model does
    not know is an error; classes with no folder are allowed (see `missing_classes`).
    """
    root = check_folder(data_dir)
    folders = class_folders(root)
    if not folders:
        raise TledgeError(f"{root} has no class subfolders; expected {root}/<class>/<image>")
    unknown = sorted(set(folders) - set(class_names))
    if unknown:
        hint = ""
        if any(name.lower() in all_split_names() for name in unknown):
            hint = "; it looks like split folders: point at one of them (e.g. DATA/test)"
        raise TledgeError(
            f"class folder(s) {unknown} in {root} are not classes of this model "
            f"(it knows {list(class_names)}){hint}"
        )
    files = list(list_class_images(root, sorted(folders), root, ""))
    check_some_image(root, files)
    scanned = scan_images(files)
    index = {name: i for i, name in enumerate(class_names)}
    items = [(f.path, index[f.class_name]) for f in scanned if not f.problem]
    skipped = [(f.relpath, f.problem) for f in scanned if f.problem]
    return items, skipped


def missing_classes(items: Iterable[tuple[object, int]], class_names: Sequence[str]) -> list[str]:
    """Classes of the model with no image among `items` (worth a warning when evaluating)."""
    present = {label for _, label in items}
    return [name for i, name in enumerate(class_names) if i not in present]
