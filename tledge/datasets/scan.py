"""Every file of a data folder read once: size, content hash, and whether it decodes to a usable image.

A broken image is found here (skipped, counted, named) and not halfway through epoch 7. The content
hashes also give the dataset its fingerprint and find duplicates. No torch needed.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tledge.preprocess import IMAGE_EXTENSIONS, decode_image, load_image

SCAN_THREADS = 2  # cv2 releases the GIL while decoding; more threads buy little on small edge/CI boxes
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


def unsupported_type(path: Path) -> str:
    """The skip reason of a file whose type tledge does not read (e.g. .gif, .txt)."""
    return f"{UNSUPPORTED} {path.suffix.lower() or '(no extension)'} (reads {', '.join(IMAGE_EXTENSIONS)})"


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


def dataset_fingerprint(images: Iterable[ScannedImage]) -> str:
    """sha256 over sorted (relpath, size, content sha1, class): the dataset's identity on the model card.

    The content hash comes free with the scan, so an edited image of the same size changes it too.
    """
    digest = hashlib.sha256()
    for rel, size, sha1, cls in sorted((f.relpath, f.size, f.sha1, f.class_name) for f in images):
        digest.update(f"{rel}\t{size}\t{sha1}\t{cls}\n".encode("utf-8"))
    return digest.hexdigest()
