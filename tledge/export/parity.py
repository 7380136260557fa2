"""Parity: does each exported artifact give the answers the PyTorch FP32 checkpoint gives?

Every artifact and the reference see identical preprocessed batches (decoded once by tledge.preprocess,
then fed to all of them), so a difference is the artifact's, not the input pipeline's. Artifacts are run
through `tledge.runtime.backends.load_backend`, the same code `tledge predict` uses.

Per artifact: top-1 agreement with PyTorch, accuracy of both and the delta (points), max and mean |Δlogit|
relative to the logit scale (max |logit| of the reference), and the per-class accuracy delta.

Gate (`DEFAULT_TOLERANCES`), by the precision an artifact is judged as:
  fp32 (ONNX)        agreement ≥ 100 %, max relative |Δlogit| ≤ 1e-4
  fp16 (TensorRT)    agreement ≥ 99.5 %, accuracy drop ≤ 0.3 pt
  int8 (QDQ, engine) accuracy drop ≤ 1.0 pt
`--tolerance` overrides, comma-separated: `KIND.METRIC=VALUE`, or `KIND=VALUE` for a kind's main metric
(onnx → rel_diff, fp16 → acc_drop, int8 → acc_drop); kinds are onnx (alias fp32), fp16, int8; metrics are
agreement (%), acc_drop (points), rel_diff (fraction). Example: `int8=2.0,onnx=1e-3,fp16.agreement=99`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tledge.card import ModelCard
from tledge.errors import ExportOptionError, TledgeError
from tledge.preprocess import load_image, preprocess_batch

METRICS = ("agreement", "acc_drop", "rel_diff")
KIND_ALIASES = {"onnx": "fp32", "fp32": "fp32", "fp16": "fp16", "int8": "int8"}
MAIN_METRIC = {"fp32": "rel_diff", "fp16": "acc_drop", "int8": "acc_drop"}
DEFAULT_TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"agreement": 100.0, "rel_diff": 1e-4},
    "fp16": {"agreement": 99.5, "acc_drop": 0.3},
    "int8": {"acc_drop": 1.0},
}
PARITY_BATCH = 32


def parse_tolerance(text: str | None) -> dict[str, dict[str, float]]:
    """Defaults updated by a `--tolerance` string (see the module docstring for the syntax)."""
    tolerances = {kind: dict(limits) for kind, limits in DEFAULT_TOLERANCES.items()}
    if not text:
        return tolerances
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        kind_text, _, metric = key.strip().lower().partition(".")
        kind = KIND_ALIASES.get(kind_text)
        if not sep or kind is None:
            raise ExportOptionError(
                f"--tolerance {item!r}: expected KIND=VALUE or KIND.METRIC=VALUE with KIND one of onnx, fp16, int8 "
                "(e.g. int8=2.0,onnx=1e-3,fp16.agreement=99)")
        metric = metric or MAIN_METRIC[kind]
        if metric not in METRICS:
            raise ExportOptionError(f"--tolerance {item!r}: unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        try:
            number = float(value)
        except ValueError:
            raise ExportOptionError(f"--tolerance {item!r}: {value!r} is not a number") from None
        tolerances[kind][metric] = number
    return tolerances


# ----------------------------------------------------------------------------------------- data
@dataclass
class ParityData:
    """Labelled images for parity: paths, class indices, where they came from."""

    paths: list[Path]
    labels: list[int]
    source: str
    skipped: list[str] = field(default_factory=list)  # unreadable files found while reading the folder


def labelled_folder(folder: str | Path, card: ModelCard) -> ParityData:
    """An ImageFolder (folder/<class>/<images>) whose class names are the card's, read by the one
    labelled-folder reader training and bench use (tledge.train.data.read_labelled_folder)."""
    from tledge.train.data import read_labelled_folder

    try:
        items, skipped = read_labelled_folder(folder, card.class_names)
    except TledgeError as exc:
        raise TledgeError(f"{folder}: parity data must have one subfolder per class of the model "
                          f"({', '.join(card.class_names)}): {exc}") from None
    return ParityData([p for p, _ in items], [label for _, label in items], str(folder),
                      [f"{rel} ({reason})" for rel, reason in skipped])


# ----------------------------------------------------------------------------------------- compare
@dataclass
class ParityResult:
    name: str  # row name, e.g. "onnx", "int8", "int8-trt"
    artifact: str
    kind: str  # fp32 | fp16 | int8
    backend: str
    images: int
    agreement: float  # % of images with the same top-1 as PyTorch
    acc_reference: float  # %
    acc_artifact: float  # %
    acc_delta: float  # artifact − reference, points
    max_rel_diff: float  # max |Δlogit| / max |reference logit|
    mean_rel_diff: float
    per_class_delta: dict[str, float] = field(default_factory=dict)  # points, per class
    failures: list[str] = field(default_factory=list)
    passed: bool = True

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def compare_logits(reference: np.ndarray, logits: np.ndarray, labels: Sequence[int], class_names: Sequence[str]) -> dict:
    """The parity numbers for one artifact's logits against the reference's, on the same images."""
    labels = np.asarray(labels)
    ref_top, art_top = reference.argmax(axis=1), logits.argmax(axis=1)
    scale = max(float(np.abs(reference).max()), 1e-12)
    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    per_class = {}
    for index, name in enumerate(class_names):
        mask = labels == index
        if mask.any():
            per_class[name] = 100.0 * float(np.mean(art_top[mask] == index) - np.mean(ref_top[mask] == index))
    acc_ref = 100.0 * float(np.mean(ref_top == labels))
    acc_art = 100.0 * float(np.mean(art_top == labels))
    return {
        "agreement": 100.0 * float(np.mean(ref_top == art_top)),
        "acc_reference": acc_ref,
        "acc_artifact": acc_art,
        "acc_delta": acc_art - acc_ref,
        "max_rel_diff": float(diff.max()) / scale,
        "mean_rel_diff": float(diff.mean()) / scale,
        "per_class_delta": per_class,
    }


def gate(numbers: dict, kind: str, tolerances: dict[str, dict[str, float]]) -> list[str]:
    """What is outside tolerance, in words (empty: passed)."""
    limits = tolerances.get(kind, {})
    failures = []
    if "agreement" in limits and numbers["agreement"] < limits["agreement"] - 1e-9:
        failures.append(f"top-1 agreement {numbers['agreement']:.2f}% < {limits['agreement']:g}%")
    if "acc_drop" in limits and -numbers["acc_delta"] > limits["acc_drop"] + 1e-9:
        failures.append(f"accuracy drop {-numbers['acc_delta']:.2f} pt > {limits['acc_drop']:g} pt")
    if "rel_diff" in limits and numbers["max_rel_diff"] > limits["rel_diff"]:
        failures.append(f"max |Δlogit| {numbers['max_rel_diff']:.2e} of the logit scale > {limits['rel_diff']:g}")
    return failures


def run_parity(reference: Callable[[np.ndarray], np.ndarray], artifacts: Sequence[tuple[str, str | Path, str]],
               data: ParityData, card: ModelCard, tolerances: dict[str, dict[str, float]] | None = None,
               batch_size: int = PARITY_BATCH, device: str = "auto") -> tuple[list[ParityResult], dict]:
    """Run `reference` (PyTorch FP32: batch → logits) and each artifact (name, path, kind) on `data`.

    Returns (results, info) where info has the counts of images used and skipped.
    """
    from tledge.runtime.backends import load_backend

    tolerances = tolerances or parse_tolerance(None)
    backends = [(name, Path(path), kind, load_backend(path, device=device)) for name, path, kind in artifacts]
    try:
        ref_chunks: list[np.ndarray] = []
        art_chunks: dict[str, list[np.ndarray]] = {name: [] for name, *_ in backends}
        labels: list[int] = []
        skipped: list[str] = []
        for start in range(0, len(data.paths), batch_size):
            images, batch_labels = [], []
            for path, label in zip(data.paths[start:start + batch_size], data.labels[start:start + batch_size]):
                image = load_image(path)
                if image is None:
                    skipped.append(str(path))
                    continue
                images.append(image)
                batch_labels.append(label)
            if not images:
                continue
            batch = preprocess_batch(images, card)
            ref_chunks.append(np.asarray(reference(batch), dtype=np.float32))
            for name, _, _, backend in backends:
                art_chunks[name].append(_predict_any_batch(backend, batch))
            labels.extend(batch_labels)
        if not labels:
            raise TledgeError(f"parity: none of the {len(data.paths)} images in {data.source} could be read")
        reference_logits = np.concatenate(ref_chunks)
        results = []
        for name, path, kind, backend in backends:
            numbers = compare_logits(reference_logits, np.concatenate(art_chunks[name]), labels, card.class_names)
            failures = gate(numbers, kind, tolerances)
            results.append(ParityResult(name, str(path), kind, backend.name, len(labels), **numbers,
                                        failures=failures, passed=not failures))
        return results, {"images": len(labels), "skipped": skipped, "source": data.source}
    finally:
        for *_, backend in backends:
            backend.close()


def _predict_any_batch(backend, batch: np.ndarray) -> np.ndarray:
    """Feed a batch of any size to a backend whose graph may have a fixed or bounded batch."""
    limit = backend.max_batch
    if limit is None or len(batch) == limit:
        return backend.predict(batch)
    fixed = getattr(backend, "min_batch", None) is None  # ONNX with a fixed N: exactly N per call
    outputs = []
    for start in range(0, len(batch), limit):
        chunk = batch[start:start + limit]
        if fixed and len(chunk) < limit:
            padded = np.zeros((limit, *chunk.shape[1:]), dtype=chunk.dtype)
            padded[: len(chunk)] = chunk
            outputs.append(backend.predict(padded)[: len(chunk)])
        else:
            outputs.append(backend.predict(chunk))
    return np.concatenate(outputs)


def parity_message(results: Sequence[ParityResult]) -> str:
    """The ParityError text: what failed, and for INT8 what to try."""
    failed = [r for r in results if not r.passed]
    parts = [f"{r.name}: {'; '.join(r.failures)}" for r in failed]
    message = "parity check failed: " + " | ".join(parts)
    if any(r.kind == "int8" for r in failed):
        message += (" — INT8 is over its accuracy budget; try more calibration images (--calib-images), another "
                    "--calib-method (percentile or entropy), trt-fp16 instead, or --int8-budget PT (searches calibration and "
                    "keeps sensitive layers in float); "
                    "--tolerance int8=N accepts a larger drop")
    return message + " (details in parity.json)"
