"""The data report: what the scan found (counts per split and class, skipped files, leaked duplicates,
imbalance), printed before training and saved in the run folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tledge.splits import SPLIT_NAMES
from tledge.datasets.layout import UNLABELLED_FOLDER_NAMES, class_folders
from tledge.datasets.scan import UNSUPPORTED, ScannedImage

IMBALANCE_WARN_RATIO = 1.5
EXAMPLES_SHOWN = 3


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
        from tledge.table import format_table

        lines = [f"data: {self.root} ({self.layout}), {len(self.class_names)} classes"]
        rows = [{"class": name, **{s: self.counts.get(s, {}).get(name, 0) for s in SPLIT_NAMES}}
                for name in self.class_names]
        rows.append({"class": "total", **{s: self.split_total(s) for s in SPLIT_NAMES}})
        lines += ["  " + line for line in format_table(rows).splitlines()]
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


def find_duplicates(assigned: dict[str, list[ScannedImage]], report: DataReport) -> None:
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


def warn_imbalance(report: DataReport) -> None:
    """A warning when the largest class has more than IMBALANCE_WARN_RATIO times the smallest's images."""
    totals = report.class_totals()
    largest = max(totals, key=totals.get)
    smallest = min(totals, key=totals.get)
    if totals[smallest] and totals[largest] / totals[smallest] > IMBALANCE_WARN_RATIO:
        ratio = totals[largest] / totals[smallest]
        report.warnings.append(
            f"classes are imbalanced {ratio:.1f}:1 ({largest!r} has {totals[largest]} images, "
            f"{smallest!r} {totals[smallest]}); consider class weighting or more data for {smallest!r}"
        )


def warn_empty_splits(report: DataReport, sources: dict[str, Path], ratios: Sequence[float]) -> None:
    """A warning for a val or test split left empty although asked for (by ratio or by folder)."""
    for split, ratio in (("val", ratios[1]), ("test", ratios[2])):
        if report.split_total(split) == 0 and (ratio > 0 or split in sources):
            report.warnings.append(f"the {split} split is empty (too few images per class?)")
        elif report.split_total(split) > 0:
            missing = [name for name in report.class_names if not report.counts.get(split, {}).get(name, 0)]
            if missing:
                report.warnings.append(
                    f"class(es) {', '.join(map(repr, missing))} have no {split} images: their {split} scores are not "
                    f"measured (left out of macro averages); add images or use another --split")


def warn_ignored_folders(root: Path, sources: dict[str, Path], report: DataReport) -> None:
    """In a split-folder layout, say which other folders were not used (a misplaced class folder?)."""
    if list(sources.values()) == [root]:
        return
    used = {p.name for p in sources.values()} | set(UNLABELLED_FOLDER_NAMES)
    ignored = [name for name in class_folders(root) if name.lower() not in used and name not in used]
    if ignored:
        report.warnings.append(f"ignored folder(s) {ignored} next to the split folders in {root}")
