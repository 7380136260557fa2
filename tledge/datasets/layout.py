"""How a data folder is laid out: split folders or one ImageFolder, which folders are classes, which files
are in them.

DATA is either an ImageFolder (`DATA/<class>/**/<image>`) or holds split folders
(`DATA/train|val|test/<class>/...`, also `valid`, `validation`, `seg_train`, `seg_test`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tledge.errors import TledgeError
from tledge.preprocess import IMAGE_EXTENSIONS, is_image_file
from tledge.datasets.scan import ScannedImage, unsupported_type

# Folder names that mean "this is a split, not a class" (lower-case); the first wins when several exist.
SPLIT_FOLDER_NAMES = {
    "train": ("train", "seg_train"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "seg_test"),
}
UNLABELLED_FOLDER_NAMES = ("seg_pred",)  # the Intel scene set's unlabelled images: ignored


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


def all_split_names() -> set[str]:
    """Every folder name that means a split (or the unlabelled images), lower-case."""
    return {n for names in SPLIT_FOLDER_NAMES.values() for n in names} | set(UNLABELLED_FOLDER_NAMES)


def check_folder(data_dir: str | Path) -> Path:
    """The data folder as an absolute path; an error when it is missing or a file."""
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise TledgeError(f"data folder not found: {path}")
    if not path.is_dir():
        raise TledgeError(f"data path is not a folder: {path}")
    return path.resolve()


def _visible_subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_folders(folder: Path) -> list[str]:
    """Names of the visible subfolders (sorted): the classes of an ImageFolder."""
    return [p.name for p in _visible_subfolders(folder)]


def class_names_for(sources: dict[str, Path]) -> list[str]:
    """Sorted class folder names of the train folder; every other split folder must have the same set."""
    train = sources["train"]
    class_names = class_folders(train)
    if not class_names:
        loose = [p for p in train.iterdir() if p.is_file() and is_image_file(p)]
        if loose:
            raise TledgeError(
                f"{train} has images but no class subfolders; put each class in its own folder: "
                f"{train}/<class>/<image>"
            )
        raise TledgeError(f"no images found in {train} (expected {train}/<class>/<image>)")
    for split, folder in sources.items():
        other = class_folders(folder)
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


def list_class_images(folder: Path, class_names: Sequence[str], root: Path, source: str) -> list[ScannedImage]:
    """Every visible file under folder/<class>/, by tledge.image_files' rules (the ones predict and INT8
    calibration use); files of a type tledge does not read are kept with the reason, to be counted."""
    from tledge.image_files import list_files

    found = []
    for name in class_names:
        for path in list_files(folder / name):
            problem = "" if is_image_file(path) else unsupported_type(path)
            found.append(ScannedImage(path, path.relative_to(root).as_posix(), name, source, problem=problem))
    found.sort(key=lambda f: f.relpath)
    return found


def check_some_image(root: Path, files: list[ScannedImage]) -> None:
    """An error when none of the listed files is of a type tledge reads (naming what was found instead)."""
    if any(not f.problem for f in files):
        return
    others = f"; found {len(files)} file(s) of other types, e.g. {files[0].relpath}" if files else ""
    raise TledgeError(f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)}{others})")


def check_every_class_readable(
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
