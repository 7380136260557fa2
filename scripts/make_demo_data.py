#!/usr/bin/env python3
"""Regenerate tledge's built-in demo data set: a balanced sample of real Fashion-MNIST images.

Source: Debian's package ``dataset-fashion-mnist`` (MIT licence, copyright 2017 Zalando SE), which ships the
original idx files of Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) under /usr/share/datasets/fashion-mnist:

    apt-get install -y dataset-fashion-mnist
    python scripts/make_demo_data.py            # writes tledge/data/fashion_mnist_sample/

What it writes, in ImageFolder layout:

    tledge/data/fashion_mnist_sample/<class_name>/<index>.png

- Images come from the TEST split only (t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz).
- For each of the 10 classes, ``--per-class`` (default 60) test-set indices are drawn without replacement with
  ``numpy.random.default_rng(--seed)`` (default 2017); classes are drawn in label order 0..9 from one generator,
  so the selection depends only on the seed, the count and the source files.
- ``<index>`` is the image's 0-based position in the t10k file, zero-padded to 4 digits, so every sample image
  can be traced back to the original.
- Each image is the original 28x28 uint8 grayscale array, written losslessly as PNG by OpenCV at maximum
  compression (level 9).

The idx format is parsed here with numpy (big-endian header: magic 0x00000803 for images with 3 dimensions,
0x00000801 for labels with 1, then the sizes, then the raw uint8 data).

Idempotent: PNG files whose bytes would not change are left alone (mtime kept), changed ones are replaced, and
PNGs or class folders that are not part of the selection are removed. LICENSE.txt and README.md in the output
folder are maintained by hand and never touched.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = REPO / "tledge" / "data" / "fashion_mnist_sample"
DEFAULT_PER_CLASS = 60
DEFAULT_SEED = 2017

# Fashion-MNIST label order (label i -> CLASS_NAMES[i]): one list, kept in the package.
sys.path.insert(0, str(REPO))
from tledge.data import DEMO_DATA_CLASSES as CLASS_NAMES  # noqa: E402

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"

# SHA-256 of the files in dataset-fashion-mnist 0.0~git20200523.55506a9-1 (Debian bookworm); a mismatch
# only warns, since any faithful copy of the original files gives the same images.
KNOWN_SHA256 = {
    IMAGES_FILE: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    LABELS_FILE: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

_IDX_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip-compressed idx file of unsigned bytes into a numpy array of its declared shape."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic {raw[:4].hex()})")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != _IDX_UBYTE:
        raise ValueError(f"{path}: idx data type 0x{dtype_code:02x} is not unsigned byte (0x08)")
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} bytes of data")
    return data.reshape(shape)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def select_indices(labels: np.ndarray, per_class: int, seed: int) -> dict[int, np.ndarray]:
    """Per label, `per_class` sorted indices into `labels`, drawn without replacement with one seeded generator."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for label in range(len(CLASS_NAMES)):
        pool = np.flatnonzero(labels == label)
        if pool.size < per_class:
            raise ValueError(f"class {label} has only {pool.size} test images, {per_class} asked for")
        chosen[label] = np.sort(rng.choice(pool, size=per_class, replace=False))
    return chosen


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def write_sample(source: Path, out: Path, per_class: int, seed: int) -> dict[str, int]:
    """Write the sample into `out`; returns counts of written, unchanged and removed files."""
    images_path, labels_path = source / IMAGES_FILE, source / LABELS_FILE
    for p in (images_path, labels_path):
        if not p.is_file():
            sys.exit(f"missing {p}: install it with `apt-get install -y dataset-fashion-mnist` or pass --source")
        digest = sha256(p)
        if digest != KNOWN_SHA256[p.name]:
            print(f"warning: {p.name} sha256 {digest} differs from the known Debian file", file=sys.stderr)

    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise ValueError(f"unexpected shapes: images {images.shape}, labels {labels.shape}")

    chosen = select_indices(labels, per_class, seed)
    stats = {"written": 0, "unchanged": 0, "removed": 0}
    out.mkdir(parents=True, exist_ok=True)

    # Remove class folders that are not ours (only folders: LICENSE.txt and README.md stay).
    for entry in sorted(out.iterdir()):
        if entry.is_dir() and entry.name not in CLASS_NAMES:
            shutil.rmtree(entry)
            stats["removed"] += 1

    for label, indices in chosen.items():
        class_dir = out / CLASS_NAMES[label]
        class_dir.mkdir(exist_ok=True)
        wanted = {f"{int(i):04d}.png": int(i) for i in indices}
        for entry in sorted(class_dir.iterdir()):
            if entry.name not in wanted:
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                stats["removed"] += 1
        for name, index in wanted.items():
            target = class_dir / name
            data = encode_png(images[index])
            if target.is_file() and target.read_bytes() == data:
                stats["unchanged"] += 1
                continue
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            stats["written"] += 1
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help=f"folder with the Fashion-MNIST idx .gz files (default {DEFAULT_SOURCE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder (default tledge/data/fashion_mnist_sample in this repo)")
    parser.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS,
                        help=f"images per class (default {DEFAULT_PER_CLASS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"selection seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)

    stats = write_sample(args.source, args.out, args.per_class, args.seed)
    pngs = sorted(args.out.glob("*/*.png"))
    total = sum(p.stat().st_size for p in pngs)
    print(f"{args.out}: {len(pngs)} PNGs in {len(CLASS_NAMES)} classes, {total:,} bytes of PNG data "
          f"({stats['written']} written, {stats['unchanged']} unchanged, {stats['removed']} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
