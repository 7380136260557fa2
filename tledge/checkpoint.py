"""Checkpoints: a dict of tensors and primitives only (loads with `weights_only=True`), written atomically.
File I/O only: rebuilding the model is tledge.models.restore.load_model (this module imports nothing from
tledge.training, so the backbone registry can read checkpoints without an import cycle).

Layout: {"card": dict, "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
"epoch": int, "best_metric": float, "best_epoch": int, "rng": {...}, "config": dict, "history": list}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tledge.errors import TledgeError, require

BEST = "best.pt"
LAST = "last.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """torch.save to a temp file, fsync, rename: a kill at any moment leaves the previous good file."""
    torch = require("torch", "train", "saving a checkpoint")
    from tledge.atomic import atomic_write_with

    def write(tmp: Path) -> None:
        """Through a file object, so a failed write (disk full, I/O error) is the OSError with its errno, not
        torch's "unexpected pos" RuntimeError that follows it."""
        with open(tmp, "wb") as handle:
            try:
                torch.save(state, handle)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise

    path = Path(path)
    atomic_write_with(path, write)
    return path


# What a file that is not a checkpoint is, from its first bytes (torch's own message is pages of weights_only).
_NOT_CHECKPOINTS = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"), (b"BM", "a BMP image"),
    (b"RIFF", "a WebP image or a video"), (b"%PDF", "a PDF"), (b"{", "a JSON file"), (b"\x1f\x8b", "a gzip archive"),
)
ARTIFACT_HINT = ("eval and export take a run folder or its best.pt; .onnx and .engine files run with "
                 "tledge predict / tledge bench")


def not_a_checkpoint(path: str | Path) -> str | None:
    """What `path` is when it is plainly not a PyTorch checkpoint (zip or pickle), e.g. "an ONNX model";
    None when it may be one, or when its kind is unknown."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # torch's zip format, or a legacy pickle
        return None
    if path.suffix.lower() == ".onnx":
        return "an ONNX model"
    if path.suffix.lower() in (".engine", ".plan", ".trt"):
        return "a TensorRT engine"
    for magic, kind in _NOT_CHECKPOINTS:
        if head.startswith(magic):
            return kind
    return None  # unknown: torch.load says what it can


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with weights_only=True; a missing or corrupt file is a one-line TledgeError."""
    torch = require("torch", "train", "reading a .pt checkpoint")
    path = Path(path)
    if not path.is_file():
        raise TledgeError(f"checkpoint not found: {path}")
    kind = not_a_checkpoint(path)
    if kind is not None:
        raise TledgeError(f"{path} is {kind}, not a PyTorch checkpoint; {ARTIFACT_HINT}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip/unpickling errors all mean "not usable"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TledgeError(f"{path} is not a readable checkpoint ({first_line[:160]})") from None
    if not isinstance(state, dict):
        raise TledgeError(f"{path} is not a checkpoint (holds a {type(state).__name__}, expected a dict)")
    return state


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder → its best.pt; a .pt file → itself."""
    path = Path(path)
    if path.is_dir():
        best = path / BEST
        if not best.is_file():
            raise TledgeError(f"{path} has no {BEST}; is it a finished tledge run folder?")
        return best
    if not path.exists():
        raise TledgeError(f"no such file or folder: {path}")
    return path
