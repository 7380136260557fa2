"""Data discovery for `tledge train`: find the classes, check every image once, split, and report.

DATA is either an ImageFolder (`DATA/<class>/**/<image>`) or holds split folders
(`DATA/train|val|test/<class>/...`, also `valid`, `validation`, `seg_train`, `seg_test`). Every file is
decoded once during the scan, so a broken image is found here (skipped, counted, named) and not halfway
through epoch 7. Splits are seeded and stratified per class, so a rare class always lands in val and
test. The `DataReport` says what was found: counts, skipped files, leaked duplicates, imbalance.
No torch needed.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tledge.errors import TledgeError
from tledge.preprocess import IMAGE_EXTENSIONS, decode_image, is_image_file, load_image
from tledge.splits import SPLIT_NAMES, Splits

# Folder names that mean "this is a split, not a class" (lower-case); the first wins when several exist.
SPLIT_FOLDER_NAMES = {
    "train": ("train", "seg_train"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "seg_test"),
}
UNLABELLED_FOLDER_NAMES = ("seg_pred",)  # the Intel scene set's unlabelled images: ignored
SCAN_THREADS = 2  # cv2 releases the GIL while decoding; more threads buy little on small edge/CI boxes
IMBALANCE_WARN_RATIO = 1.5
EXAMPLES_SHOWN = 3
UNSUPPORTED = "unsupported file type"


@dataclass
class ScannedImage:
    """One file found in a class folder, after trying to decode it."""

    path: Path  # absolute
    relpath: str  # relative to the DATA root, with forward slashes
    class_name: str
    source: str  # the split folder it came from ("train", "val", "test") or "" for an ImageFolder
    size: int = 0
    sha1: str = ""
    problem: str = ""  # why it is unreadable; "" when it decoded fine


@dataclass
class DataReport:
    """What the scan found, for printing before training and for the run folder."""

    root: str
    layout: str  # "image folder" or e.g. "split folders: train, test"
    class_names: list[str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    cross_split_duplicates: list[list[str]] = field(default_factory=list)  # identical files in >1 split
    label_conflicts: list[list[str]] = field(default_factory=list)  # identical files, different classes
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def split_total(self, split: str) -> int:
        return sum(self.counts.get(split, {}).values())

    def class_totals(self) -> dict[str, int]:
        return {name: sum(self.counts.get(s, {}).get(name, 0) for s in SPLIT_NAMES) for name in self.class_names}

    def summary_lines(self) -> list[str]:
        """Human-readable summary: one table of counts, then skipped files and warnings."""
        width = max(len("class"), *(len(name) for name in self.class_names))
        lines = [f"data: {self.root} ({self.layout}), {len(self.class_names)} classes"]
        lines.append(f"  {'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}")
        for name in self.class_names:
            cells = " ".join(f"{self.counts.get(s, {}).get(name, 0):>6}" for s in SPLIT_NAMES)
            lines.append(f"  {name:<{width}}  {cells}")
        totals = " ".join(f"{self.split_total(s):>6}" for s in SPLIT_NAMES)
        lines.append(f"  {'total':<{width}}  {totals}")
        other_types = [(rel, reason) for rel, reason in self.skipped if reason.startswith(UNSUPPORTED)]
        unreadable = [pair for pair in self.skipped if pair not in other_types]
        for kind, group in (("unreadable", unreadable), ("unsupported-type", other_types)):
            if group:
                lines.append(f"skipped {len(group)} {kind} file(s):")
                lines += [f"  {rel}: {reason}" for rel, reason in group[:20]]
                if len(group) > 20:
                    lines.append(f"  ... and {len(group) - 20} more (see splits.json)")
        lines += [f"warning: {text}" for text in self.warnings]
        lines.append(f"fingerprint: {self.fingerprint[:16]}")
        return lines

    def to_dict(self) -> dict:
        """JSON-able form for the run folder."""
        return {
            "root": self.root,
            "layout": self.layout,
            "class_names": list(self.class_names),
            "counts": self.counts,
            "skipped": [list(pair) for pair in self.skipped],
            "cross_split_duplicates": self.cross_split_duplicates,
            "label_conflicts": self.label_conflicts,
            "warnings": list(self.warnings),
            "fingerprint": self.fingerprint,
        }


# ----------------------------------------------------------------------------------------------------
# Public entry points


def build_splits(
    data_dir: str | Path, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[Splits, DataReport]:
    """Scan DATA, split it (stratified, seeded) and report what was found.

    Split folders that exist are used as they are; missing val/test are carved out of train with the
    matching share of `ratios` (only train: 80/10/10 by default; train+test: val = val/(train+val)).
    """
    ratios = _check_ratios(ratios)
    root = _check_folder(data_dir)
    sources = find_split_folders(root)
    layout = "image folder" if sources is None else "split folders: " + ", ".join(p.name for p in sources.values())
    if sources is None:
        sources = {"train": root}
    class_names = _class_names_for(sources)

    files = [f for name, folder in sources.items() for f in _list_class_images(folder, class_names, root, name)]
    if not any(not f.problem for f in files):
        raise TledgeError(f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)}"
                          f"{_others_found(files)})")
    scanned = scan_images(files)
    readable = [f for f in scanned if not f.problem]
    warnings: list[str] = []
    _check_every_class_readable(readable, class_names, sources, warnings)

    assigned = _assign_splits(readable, sources, ratios, seed)
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
    _find_duplicates(assigned, report)
    _warn_imbalance(report)
    _warn_empty_splits(report, sources, ratios)
    _warn_ignored_folders(root, sources, report)
    return splits, report


def read_labelled_folder(
    data_dir: str | Path, class_names: Sequence[str]
) -> tuple[list[tuple[Path, int]], list[tuple[str, str]]]:
    """Read an ImageFolder to evaluate it against a trained model's classes.

    Returns ([(absolute path, class index)], [(relpath, reason) skipped]). A class folder the model does
    not know is an error; classes with no folder are allowed (see `missing_classes`).
    """
    root = _check_folder(data_dir)
    folders = _class_folders(root)
    if not folders:
        raise TledgeError(f"{root} has no class subfolders; expected {root}/<class>/<image>")
    unknown = sorted(set(folders) - set(class_names))
    if unknown:
        hint = ""
        if any(name.lower() in _all_split_names() for name in unknown):
            hint = "; it looks like split folders: point at one of them (e.g. DATA/test)"
        raise TledgeError(
            f"class folder(s) {unknown} in {root} are not classes of this model "
            f"(it knows {list(class_names)}){hint}"
        )
    files = list(_list_class_images(root, sorted(folders), root, ""))
    if not any(not f.problem for f in files):
        raise TledgeError(f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)}"
                          f"{_others_found(files)})")
    scanned = scan_images(files)
    index = {name: i for i, name in enumerate(class_names)}
    items = [(f.path, index[f.class_name]) for f in scanned if not f.problem]
    skipped = [(f.relpath, f.problem) for f in scanned if f.problem]
    return items, skipped


def missing_classes(items: Iterable[tuple[object, int]], class_names: Sequence[str]) -> list[str]:
    """Classes of the model with no image among `items` (worth a warning when evaluating)."""
    present = {label for _, label in items}
    return [name for i, name in enumerate(class_names) if i not in present]


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


def dataset_fingerprint(images: Iterable[ScannedImage]) -> str:
    """sha256 over sorted (relpath, size, content sha1, class): the dataset's identity on the model card.

    The content hash comes free with the scan, so an edited image of the same size changes it too.
    """
    digest = hashlib.sha256()
    for rel, size, sha1, cls in sorted((f.relpath, f.size, f.sha1, f.class_name) for f in images):
        digest.update(f"{rel}\t{size}\t{sha1}\t{cls}\n".encode("utf-8"))
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Folders and classes


def find_split_folders(root: Path) -> dict[str, Path] | None:
    """{"train": DATA/train, ...} when DATA holds split folders, or None for a plain ImageFolder."""
    by_name = {p.name.lower(): p for p in _visible_subfolders(root)}
    found = {}
    for split, names in SPLIT_FOLDER_NAMES.items():
        for name in names:
            if name in by_name:
                found[split] = by_name[name]
                break
    if not found:
        return None
    if "train" not in found:
        present = ", ".join(p.name for p in found.values())
        raise TledgeError(f"{root} has split folder(s) {present} but no train folder (train/ or seg_train/)")
    return found


def _all_split_names() -> set[str]:
    return {n for names in SPLIT_FOLDER_NAMES.values() for n in names} | set(UNLABELLED_FOLDER_NAMES)


def _check_folder(data_dir: str | Path) -> Path:
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise TledgeError(f"data folder not found: {path}")
    if not path.is_dir():
        raise TledgeError(f"data path is not a folder: {path}")
    return path.resolve()


def _visible_subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_folders(folder: Path) -> list[str]:
    return [p.name for p in _visible_subfolders(folder)]


def _class_names_for(sources: dict[str, Path]) -> list[str]:
    """Sorted class folder names of the train folder; every other split folder must have the same set."""
    train = sources["train"]
    class_names = _class_folders(train)
    if not class_names:
        loose = [p for p in train.iterdir() if p.is_file() and is_image_file(p)]
        if loose:
            raise TledgeError(
                f"{train} has images but no class subfolders; put each class in its own folder: "
                f"{train}/<class>/<image>"
            )
        raise TledgeError(f"no images found in {train} (expected {train}/<class>/<image>)")
    for split, folder in sources.items():
        other = _class_folders(folder)
        if set(other) != set(class_names):
            lacks = sorted(set(class_names) - set(other))
            extra = sorted(set(other) - set(class_names))
            parts = [f"lacks {lacks}"] if lacks else []
            parts += [f"has extra {extra}"] if extra else []
            raise TledgeError(
                f"class folders differ between splits: {folder.name}/ {' and '.join(parts)} "
                f"compared with {train.name}/"
            )
    if len(class_names) < 2:
        raise TledgeError(f"{train} needs at least 2 class folders to train a classifier, found {class_names}")
    return class_names


def _list_class_images(folder: Path, class_names: Sequence[str], root: Path, source: str) -> list[ScannedImage]:
    """Image files under folder/<class>/ (recursive, sorted, hidden files and folders left out)."""
    found = []
    for name in class_names:
        class_dir = folder / name
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if filename.startswith("."):
                    continue
                path = Path(dirpath) / filename
                relpath = path.relative_to(root).as_posix()
                problem = "" if is_image_file(filename) else unsupported_type(path)
                found.append(ScannedImage(path, relpath, name, source, problem=problem))
    found.sort(key=lambda f: f.relpath)
    return found


def _others_found(files: list[ScannedImage]) -> str:
    return f"; found {len(files)} file(s) of other types, e.g. {files[0].relpath}" if files else ""


def unsupported_type(path: Path) -> str:
    """The skip reason of a file whose type tledge does not read (e.g. .gif, .txt)."""
    return f"{UNSUPPORTED} {path.suffix.lower() or '(no extension)'} (reads {', '.join(IMAGE_EXTENSIONS)})"


def _check_every_class_readable(
    readable: list[ScannedImage], class_names: Sequence[str], sources: dict[str, Path], warnings: list[str]
) -> None:
    """A class with nothing to learn from is an error; an empty class in val/test folder is a warning."""
    for name in class_names:
        sources_with = {f.source for f in readable if f.class_name == name}
        if "train" not in sources_with:
            raise TledgeError(f"class folder {sources['train'].name}/{name} has no readable images")
        for split in sources:
            if split not in sources_with:
                warnings.append(f"class {name!r} has no readable images in {sources[split].name}/")


# ----------------------------------------------------------------------------------------------------
# Scanning


def scan_images(files: list[ScannedImage], threads: int = SCAN_THREADS) -> list[ScannedImage]:
    """Read, hash and decode every file once (small thread pool); fills size, sha1 and problem."""
    if threads <= 1 or len(files) < 8:
        return [_scan_one(f) for f in files]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(_scan_one, files))


def _scan_one(item: ScannedImage) -> ScannedImage:
    if item.problem:  # already ruled out (unsupported file type)
        return item
    try:
        data = item.path.read_bytes()
    except OSError as exc:
        item.problem = f"cannot read file ({exc.strerror or exc})"
        return item
    item.size = len(data)
    item.sha1 = hashlib.sha1(data).hexdigest()
    item.problem = image_problem(data, item.path)
    return item


def image_problem(data: bytes, path: Path | None = None) -> str:
    """Why these bytes are not a usable image, or "" when they decode to a full image.

    cv2 returns a half-grey image for a cut-off JPEG instead of failing, so the end markers are checked
    first: JPEG must end with FFD9 (trailing padding allowed), PNG must contain its IEND chunk.
    """
    if not data:
        return "empty file (0 bytes)"
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-256:]:
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        return "truncated PNG (no IEND chunk)"
    image = decode_image(data)
    if image is None and path is not None:
        image = load_image(path)  # Pillow fallback (some CMYK TIFFs)
    if image is None:
        return "not a readable image"
    if image.shape[0] < 2 or image.shape[1] < 2:
        return f"too small ({image.shape[1]}x{image.shape[0]} px)"
    return ""


# ----------------------------------------------------------------------------------------------------
# Splitting


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
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


def _assign_splits(
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


# ----------------------------------------------------------------------------------------------------
# Report checks


def _find_duplicates(assigned: dict[str, list[ScannedImage]], report: DataReport) -> None:
    """Warn about byte-identical files in more than one split (leakage) or under different classes."""
    groups: dict[str, list[tuple[str, ScannedImage]]] = {}
    for split in SPLIT_NAMES:
        for f in assigned[split]:
            groups.setdefault(f.sha1, []).append((split, f))
    for members in groups.values():
        if len(members) < 2:
            continue
        paths = sorted(f.relpath for _, f in members)
        if len({split for split, _ in members}) > 1:
            report.cross_split_duplicates.append(paths)
        if len({f.class_name for _, f in members}) > 1:
            report.label_conflicts.append(paths)
    report.cross_split_duplicates.sort()
    report.label_conflicts.sort()
    if report.cross_split_duplicates:
        examples = "; ".join(" = ".join(g) for g in report.cross_split_duplicates[:EXAMPLES_SHOWN])
        report.warnings.append(
            f"{len(report.cross_split_duplicates)} image(s) are byte-identical copies in more than one split "
            f"(leakage: val/test scores will look better than they are), e.g. {examples}"
        )
    if report.label_conflicts:
        examples = "; ".join(" = ".join(g) for g in report.label_conflicts[:EXAMPLES_SHOWN])
        report.warnings.append(
            f"{len(report.label_conflicts)} image(s) appear identically under different classes "
            f"(contradictory labels), e.g. {examples}"
        )


def _warn_imbalance(report: DataReport) -> None:
    totals = report.class_totals()
    largest = max(totals, key=totals.get)
    smallest = min(totals, key=totals.get)
    if totals[smallest] and totals[largest] / totals[smallest] > IMBALANCE_WARN_RATIO:
        ratio = totals[largest] / totals[smallest]
        report.warnings.append(
            f"classes are imbalanced {ratio:.1f}:1 ({largest!r} has {totals[largest]} images, "
            f"{smallest!r} {totals[smallest]}); consider class weighting or more data for {smallest!r}"
        )


def _warn_empty_splits(report: DataReport, sources: dict[str, Path], ratios: Sequence[float]) -> None:
    for split, ratio in (("val", ratios[1]), ("test", ratios[2])):
        if report.split_total(split) == 0 and (ratio > 0 or split in sources):
            report.warnings.append(f"the {split} split is empty (too few images per class?)")


def _warn_ignored_folders(root: Path, sources: dict[str, Path], report: DataReport) -> None:
    """In a split-folder layout, say which other folders were not used (a misplaced class folder?)."""
    if list(sources.values()) == [root]:
        return
    used = {p.name for p in sources.values()} | set(UNLABELLED_FOLDER_NAMES)
    ignored = [name for name in _class_folders(root) if name.lower() not in used and name not in used]
    if ignored:
        report.warnings.append(f"ignored folder(s) {ignored} next to the split folders in {root}")
