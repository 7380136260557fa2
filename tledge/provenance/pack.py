"""The parity pack: what `tledge verify` needs to re-check an artifact anywhere, written beside every export.

    export/parity-pack/
      manifest.json   format, class names, image size, source, sampling, tolerances, one entry per image
                      (file, label, sha256 of the file, sha256 of its preprocessed tensor), checksums
      images/NNNNN.jpg  the labelled photos parity used (a seeded, class-stratified sample when there are
                      more than `cap`); small files are copied byte for byte, large ones re-encoded at about
                      the model's input size (JPEG q95) so the pack stays small
      reference.npz   the PyTorch FP32 logits of exactly these files (what every artifact is compared with)

Copying `RUN/export/` copies the pack. Reading it needs numpy and OpenCV only (no torch, no dataset).
The preprocessed-tensor checksums tell a verifier whether its OpenCV decodes the photos bit for bit as the
exporting machine did; when not, the FP32 logit gate measures the decoder as well, and verify says so.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tledge import __version__
from tledge.errors import TledgeError

PACK_DIR = "parity-pack"
MANIFEST = "manifest.json"
REFERENCE = "reference.npz"
PACK_FORMAT = 1
DEFAULT_PACK_IMAGES = 2500  # intel-scenes' whole test split (874 or 2,158 photos, ~10 kB each) fits
VERBATIM_MAX_BYTES = 48_000  # larger files are re-encoded at about the input size
REENCODE_QUALITY = 95
COPYABLE = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def stratified_sample(labels: Sequence[int], cap: int, seed: int = 0) -> list[int]:
    """Indices of at most `cap` items, each class represented in proportion (at least one per present class
    while the cap allows), seeded, in their original order."""
    indices = list(range(len(labels)))
    if len(indices) <= cap:
        return indices
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    rng = random.Random(seed)
    quotas = {c: max(1, round(cap * len(items) / len(labels))) for c, items in by_class.items()}
    while sum(quotas.values()) > cap:  # rounding up: take back from the largest quotas first
        largest = max(quotas, key=lambda c: (quotas[c], c))
        quotas[largest] -= 1
    picked = [i for c, items in sorted(by_class.items()) for i in rng.sample(items, min(quotas[c], len(items)))]
    return sorted(picked)


def tensor_sha(tensor: np.ndarray) -> str:
    """Checksum of one preprocessed image (float32 CHW): equal means bit-identical inputs."""
    return hashlib.sha256(np.ascontiguousarray(tensor, dtype=np.float32).tobytes()).hexdigest()[:32]


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Pack:
    """A pack read from disk and checked against its checksums."""

    folder: Path
    manifest: dict
    paths: list[Path]
    labels: list[int]
    input_sha: list[str]
    reference: np.ndarray  # [N, C] float32 logits of PyTorch FP32

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def source(self) -> str:
        return f"parity pack {self.folder} ({len(self.paths)} images from {self.manifest.get('source', '?')})"


def write_pack(out_dir: Path, paths: Sequence[Path], labels: Sequence[int], logits: np.ndarray,
               input_sha: Sequence[str], card, source: str, tolerances: dict, cap: int = DEFAULT_PACK_IMAGES,
               reference: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0) -> Path:
    """Write `out_dir/parity-pack/` from the images parity read (`paths`, `labels`), their reference `logits`
    and preprocessed-tensor checksums. Re-encoded images get their own reference logits from `reference`.
    The folder is built beside and renamed into place, so a crash leaves the previous pack or none."""
    from tledge import preprocess

    if len(paths) != len(logits) or len(paths) != len(labels):
        raise ValueError("write_pack: paths, labels and logits must have one entry per image")
    chosen = stratified_sample(labels, cap, seed)
    final = Path(out_dir) / PACK_DIR
    staging = Path(out_dir) / f".{PACK_DIR}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    try:
        entries, ref_rows, redo = [], [], []
        for n, index in enumerate(chosen):
            src = Path(paths[index])
            suffix = src.suffix.lower()
            if suffix in COPYABLE and src.stat().st_size <= VERBATIM_MAX_BYTES:
                name = f"images/{n:05d}{suffix}"
                shutil.copyfile(src, staging / name)
                entry_sha = input_sha[index]
            else:  # a big photo: stored at about the input size, and its reference computed on what is stored
                name = f"images/{n:05d}.jpg"
                _reencode(src, staging / name, card.input_size)
                entry_sha = ""
                redo.append(n)
            entries.append({"file": name, "label": int(labels[index]), "sha256": file_sha(staging / name),
                            "input_sha": entry_sha, "from": src.name})
            ref_rows.append(np.asarray(logits[index], dtype=np.float32))
        if redo:
            if reference is None:
                raise ValueError("write_pack: re-encoded images need a reference function")
            batch, kept = preprocess.load_batch([staging / entries[n]["file"] for n in redo], card)
            if len(kept) != len(redo):
                raise TledgeError("parity pack: a re-encoded image could not be read back")
            fresh = np.asarray(reference(batch), dtype=np.float32)
            for row, n in enumerate(redo):
                ref_rows[n] = fresh[row]
                entries[n]["input_sha"] = tensor_sha(batch[row])
        reference_logits = np.stack(ref_rows) if ref_rows else np.zeros((0, card.num_classes), np.float32)
        np.savez(staging / REFERENCE, logits=reference_logits)
        manifest = {
            "format": PACK_FORMAT,
            "tledge_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "class_names": list(card.class_names),
            "input_size": list(card.input_size),
            "checkpoint_sha256": card.checkpoint_sha256,
            "source": source,
            "sampling": {"images": len(chosen), "of": len(paths), "cap": cap, "seed": seed,
                         "rule": "all" if len(chosen) == len(paths) else "seeded, class-stratified"},
            "reencoded": len(redo),
            "reference": {"file": REFERENCE, "sha256": file_sha(staging / REFERENCE),
                          "what": "PyTorch FP32 logits of these files, preprocessed by tledge.preprocess"},
            "tolerances": tolerances,
            "images": entries,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        old = Path(out_dir) / f".{PACK_DIR}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _reencode(src: Path, dst: Path, input_size: Sequence[int]) -> None:
    import cv2

    from tledge import preprocess

    image = preprocess.load_image(src)
    if image is None:
        raise TledgeError(f"parity pack: {src} could not be read again")
    height, width = image.shape[:2]
    target = int(round(max(input_size) * 1.25))  # a little above the input: the resize step still runs
    scale = target / min(height, width)
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, REENCODE_QUALITY])
    if not ok:
        raise TledgeError(f"parity pack: could not encode {src}")
    dst.write_bytes(buf.tobytes())


def find_pack(artifact: Path, pack: str | Path | None = None) -> Path:
    """The pack folder: `pack` when given, else parity-pack/ beside the artifact."""
    folder = Path(pack) if pack is not None else Path(artifact).parent / PACK_DIR
    if not (folder / MANIFEST).is_file():
        where = f"--pack {pack}" if pack is not None else f"{folder} (beside {Path(artifact).name})"
        raise TledgeError(f"no parity pack at {where}: `tledge export` writes one into the export folder; copy the "
                          "whole folder with the artifact, or pass --pack DIR")
    return folder


def read_manifest(folder: str | Path) -> dict:
    """A pack's manifest, checked for shape only (read_pack also checks every file against it)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TledgeError(f"{folder / MANIFEST}: not a readable parity pack manifest ({exc})") from None
    if not isinstance(manifest, dict) or "images" not in manifest or "class_names" not in manifest:
        raise TledgeError(f"{folder / MANIFEST}: not a tledge parity pack manifest")
    return manifest


def read_pack(folder: str | Path) -> Pack:
    """Read and check a pack: every file against its checksum (a damaged or edited pack is refused)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if int(manifest.get("format", 0)) > PACK_FORMAT:
        raise TledgeError(f"{folder}: parity pack format {manifest.get('format')} is newer than this tledge reads "
                          f"({PACK_FORMAT}); upgrade tledge")
    damaged = []
    reference_file = folder / manifest["reference"]["file"]
    if not reference_file.is_file() or file_sha(reference_file) != manifest["reference"]["sha256"]:
        damaged.append(manifest["reference"]["file"])
    for entry in manifest["images"]:
        path = folder / entry["file"]
        if not path.is_file() or file_sha(path) != entry["sha256"]:
            damaged.append(entry["file"])
    if damaged:
        raise TledgeError(f"{folder}: parity pack damaged: {len(damaged)} file(s) missing or changed since export "
                          f"(e.g. {', '.join(damaged[:3])}); copy the export folder again")
    with np.load(reference_file) as data:
        logits = np.asarray(data["logits"], dtype=np.float32)
    if logits.shape != (len(manifest["images"]), len(manifest["class_names"])):
        raise TledgeError(f"{folder}: reference logits {logits.shape} do not match the manifest")
    return Pack(folder, manifest, [folder / e["file"] for e in manifest["images"]],
                [int(e["label"]) for e in manifest["images"]], [e.get("input_sha", "") for e in manifest["images"]],
                logits)


def pack_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6
