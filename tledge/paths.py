"""Output paths checked before any work starts, so a long job never dies at its last write.

Every path a user names for output (--project, --out, --save, --json, --csv, --summary-json, --report) goes
through `check_output_file` or `check_output_dir` at the top of the library entry point. A missing parent
folder is fine (it is created like `mkdir -p` when the job writes); a parent that is a file, a file where a
folder is needed (or the reverse) and a folder nobody may write into are one-line `TledgeError`s (exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path

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
    return path


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
