"""Atomic file writes (temp file + fsync + rename): a kill at any moment leaves the previous good file.

`write_json` is the one JSON writer of the project (run files, parity.json, bench.json, summaries).
The published file gets the mode a plain `open(path, "w")` would give (0666 minus the umask), not the
temp file's private 0600, so others on a shared device can read the artifacts when the umask allows it.
A killed write leaves `.NAME.*.tmp` behind; `tledge.paths.clean_stale_temp_files` removes those on the
next start.

An output that is not a plain file is written through, never replaced: a character device (`/dev/null`,
a serial port), a FIFO or socket gets the bytes as `open(path, "w")` would give them (composed in a temp
file elsewhere first), and a symlink keeps being a link while the file it points to is replaced atomically
(a link through /proc, such as `/dev/stdout`, is written through like a device).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from tledge.errors import WriteError

# Failures of the machine, not of tledge: one line naming the file and what was kept, exit 2 (tledge.errors).
WRITE_ERRNOS = {errno.ENOSPC: "free some space or choose another folder",
                errno.EDQUOT: "the disk quota is used up; free some space or choose another folder",
                errno.EIO: "the disk or card reported an I/O error; check it (dmesg) or choose another folder",
                errno.ENAMETOOLONG: "choose a shorter name",
                errno.EROFS: "the file system is read-only; choose another folder",
                errno.EFBIG: "the file is larger than this file system allows; choose another folder"}
TEMP_NAME_ROOM = 200  # bytes of the published name kept in a temp file's name (NAME_MAX is 255 on most systems)


def write_error(path: str | Path, exc: OSError, kept: str) -> WriteError | None:
    """The one-line error for a failed write of `path` (None when `exc` is not a machine failure)."""
    if exc.errno not in WRITE_ERRNOS:
        return None
    return WriteError(f"cannot write {path}: {exc.strerror or os.strerror(exc.errno)}; {kept}; "
                      f"{WRITE_ERRNOS[exc.errno]}")


def _kept(path: Path) -> str:
    return f"the previous {path.name} is kept unchanged" if os.path.lexists(path) else f"{path.name} was not written"


def _temp_prefix(name: str) -> str:
    """`.NAME.` with NAME cut to fit: a published name near the file system's limit still gets a temp file."""
    return "." + name.encode("utf-8")[:TEMP_NAME_ROOM].decode("utf-8", "ignore") + "."


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path; on success publish it at `path`: fsync + rename for a plain file (or the file a
    symlink points to), a copy into the node for a device, FIFO or socket (see the module doc)."""
    target = publish_target(path)
    if target is None:
        with _written_through(Path(path)) as tmp_path:
            yield tmp_path
        return
    kept = _kept(target)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        error = write_error(path, exc, kept)
        if error is None:
            raise
        raise error from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def is_special(path: str | Path) -> bool:
    """True for an existing path that is (or links to) something other than a plain file or a folder: a
    character or block device, a FIFO, a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def publish_target(path: str | Path) -> Path | None:
    """Where an atomic write of `path` renames its temp file: `path` itself, the file at the end of its
    symlinks, or None when the output must be written through (a device, FIFO or socket, or a link whose
    chain passes through /proc such as /dev/stdout)."""
    path = Path(path)
    if is_special(path):
        return None
    if not path.is_symlink():
        return path
    hop = path
    for _ in range(40):  # the kernel's own limit on a chain of links
        if not hop.is_symlink():
            return hop
        link = Path(os.readlink(hop))
        hop = link if link.is_absolute() else hop.parent / link
        if hop.parts[:2] == ("/", "proc"):
            return None
    return None  # a loop: open() gives the user the error


@contextlib.contextmanager
def _written_through(path: Path) -> Iterator[Path]:
    """A temp path in the system temp folder; on success its bytes are copied into `path` (never renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as source, open(path, "wb") as sink:
            shutil.copyfileobj(source, sink)
    except OSError as exc:
        error = write_error(path, exc, "what it received before the error stays there")
        if error is None:
            raise
        raise error from None
    finally:
        tmp_path.unlink(missing_ok=True)


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it, so briefly, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Let `writer(tmp_path)` produce the file (e.g. torch.save, onnx.save), then publish it atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def plain(value: Any) -> Any:
    """numpy scalars/arrays, tuples and Paths → JSON-able Python values; NaN/inf → None (strict JSON)."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(plain(k))): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":  # ndarray and numpy scalars
        return plain(value.tolist())
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write `data` as indented JSON, atomically. numpy types become Python ones, NaN/inf become null."""
    path = Path(path)
    text = json.dumps(plain(data), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return path
