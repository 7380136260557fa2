"""Output paths checked before any work starts, so a long job never dies at its last write.

Every path a user names for output (--project, --out, --save, --json, --csv, --summary-json, --report) goes
through `check_output_file` or `check_output_dir` at the top of the library entry point. A missing parent
folder is fine (it is created like `mkdir -p` when the job writes); a parent that is a file, a file where a
folder is needed (or the reverse) and a folder nobody may write into are one-line `TledgeError`s (exit 2).

`check_outputs_apart` then checks the outputs against the job's inputs and against each other, before any
work: an output that is an input file (the model, the source image, a glob's match), an output inside a
folder the job reads (its files would be mixed with the photos), and two outputs on one path are one-line
errors. Device nodes, FIFOs and sockets (`/dev/null`, `/dev/stdout`) are written through, so they may be
named by several outputs.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

from tledge.errors import TledgeError

TMP_SUFFIX = ".tmp"


def check_output_file(path: str | Path, option: str) -> Path:
    """A file the job will write: not a folder, and its (possibly missing) parent must be creatable."""
    text = _plain(path, option)
    path = Path(path).expanduser()
    if path.is_dir():
        raise TledgeError(f"{option} {path} is a folder; give a file path, e.g. {option} {path / _example(option)}")
    if not text or text.endswith(("/", os.sep)):
        raise TledgeError(f"{option} {text!r} names a folder; give a file path, e.g. {option} {text}{_example(option)}")
    if path.exists() and not os.access(path, os.W_OK):
        raise TledgeError(f"{option} {path}: the file exists and is not writable; choose another path or fix its "
                          "permissions")
    _check_parent(path.parent, option, path)
    _check_name_lengths(path, option)
    return path


def check_output_dir(path: str | Path, option: str) -> Path:
    """A folder the job will write into (created if missing): not a file, inside a writable folder."""
    path = Path(_plain(path, option)).expanduser()
    if path.exists() and not path.is_dir():
        raise TledgeError(f"{option} {path} is a file, but a folder is needed; choose another {option} or remove it")
    if path.is_dir():
        _require_writable(path, option, path)
        return path
    _check_parent(path.parent, option, path)
    _check_name_lengths(path, option)
    return path


GLOB_CHARS = ("*", "?", "[")  # a source or input with one of these (and no such file) is a glob


def check_outputs_apart(outputs: Iterable[tuple[str, str | Path | None]],
                        inputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """No output destroys an input or another output (see the module doc).

    `outputs`: (option, path) pairs, e.g. ("--csv", "preds.csv"); None paths are skipped. `inputs`: (what,
    path) pairs, e.g. ("the model", "model.onnx"), ("the source", "photos/"): a file, a folder the job reads
    (nothing may be written inside it) or a glob (its matches are the input files). Inputs that do not exist
    on disk (camera indices, URLs) are skipped.
    """
    outs = [(option, Path(path).expanduser()) for option, path in outputs if path is not None and str(path) != ""]
    files: list[tuple[str, Path]] = []
    folders: list[tuple[str, Path]] = []
    for what, path in inputs:
        if path is None or str(path) == "":
            continue
        text = str(path)
        path = Path(text).expanduser()
        if path.is_dir():
            folders.append((what, path))
        elif path.exists():
            files.append((what, path))
        elif any(ch in text for ch in GLOB_CHARS):
            files += [(what, Path(p)) for p in glob.glob(str(path), recursive=True) if os.path.isfile(p)]
    for index, (option, out) in enumerate(outs):
        if _is_node(out):
            continue
        for what, path in files:
            if _same(out, path):
                raise TledgeError(f"{option} {out} is {what} ({path}): writing it would destroy the input; "
                                  f"choose another {option}")
        for what, folder in folders:
            if _same(out, folder) or _inside(out, folder):
                raise TledgeError(f"{option} {out} is inside {what} {folder}: its files would be mixed with the "
                                  f"input; write {option} outside {folder}")
        for other_option, other in outs[index + 1:]:
            if not _is_node(other) and _same(out, other):
                raise TledgeError(f"{option} and {other_option} both name {out}: one would overwrite the other; "
                                  "give each its own path")


def _is_node(path: Path) -> bool:
    from tledge.atomic import is_special

    return is_special(path)


def _same(a: Path, b: Path) -> bool:
    """One file or folder: the same path once links and `..` are resolved, or the same inode (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def check_name_inside(project: str | Path, name: str | None, option: str = "--name") -> None:
    """A run or sweep name is one folder inside --project: no `..`, no absolute path, no separators."""
    if name is None:
        return
    if not name or "\x00" in name or name in (".", "..") or Path(name).is_absolute() or "/" in name or "\\" in name or \
            Path(name).name != name:
        raise TledgeError(f"{option} {name!r} must be a plain folder name inside --project {project} "
                          "(no '/', '..' or absolute paths); use --project to choose where runs go")


def clean_stale_temp_files(folder: str | Path) -> list[Path]:
    """Remove `.NAME.*.tmp` left behind by a write that was killed (the atomic writer's temp files).

    Only files that match the atomic writer's pattern are touched; returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob(f".*{TMP_SUFFIX}"):
        if path.is_file():
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def _check_name_lengths(path: Path, option: str) -> None:
    """Each name in the path within the file system's NAME_MAX, the whole within PATH_MAX (ENAMETOOLONG
    found before any work, not at the last write)."""
    ancestor = path.absolute()
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    name_max, path_max = _limit(ancestor, "PC_NAME_MAX", 255), _limit(ancestor, "PC_PATH_MAX", 4096)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > name_max:
            raise TledgeError(f"{option} {path}: the name {part[:24]}… is {size} bytes and this file system allows "
                              f"{name_max}; choose a shorter name")
    size = len(os.fsencode(str(path.absolute())))
    if size >= path_max:
        raise TledgeError(f"{option} {str(path)[:48]}…: the path is {size} bytes and this system allows "
                          f"{path_max - 1}; choose a shorter path")


def _limit(folder: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(folder, name))
    except (OSError, ValueError, AttributeError):
        return default


def _plain(path: str | Path, option: str) -> str:
    text = str(path)
    if "\x00" in text:
        raise TledgeError(f"{option} {text!r}: a path cannot hold a NUL character")
    return text


def _check_parent(parent: Path, option: str, target: Path) -> None:
    ancestor = parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link: the folder it points to is gone
            raise TledgeError(f"{option} {target}: {ancestor} is a broken link")
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise TledgeError(f"{option} {target}: {ancestor} is a file, not a folder; choose another {option}")
    _require_writable(ancestor, option, target)


def _require_writable(folder: Path, option: str, target: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        where = "" if folder == target else f" (in {folder})"
        raise TledgeError(f"{option} {target}: permission denied{where}; choose a folder you can write to")


def _example(option: str) -> str:
    return {"--json": "predictions.jsonl", "--csv": "predictions.csv", "--summary-json": "summary.json",
            "--report": "int8_report.md"}.get(option, "output")
