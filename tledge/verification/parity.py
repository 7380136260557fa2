"""Parity: does each exported artifact give the answers the PyTorch FP32 checkpoint gives?

Every artifact and the reference see identical preprocessed batches (decoded once by tledge.preprocess,
then fed to all of them), so a difference is the artifact's, not the input pipeline's. Artifacts are run
through `tledge.runtime.backends.load_backend`, the same code `tledge predict` uses.

Per artifact: top-1 agreement with PyTorch, accuracy of both and the delta (points), max and mean |Δlogit|
relative to the logit scale (max |logit| of the reference), and the per-class accuracy delta.

Gate (`DEFAULT_TOLERANCES`), by the precision an artifact is judged as:
  fp32 (ONNX)        agreement ≥ 100 % (every checked image), max relative |Δlogit| ≤ 1e-4
  fp16 (TensorRT)    agreement ≥ 99.5 %, accuracy drop ≤ 0.3 pt
  int8 (QDQ, engine) accuracy drop ≤ 1.0 pt
Agreement and the accuracy difference are judged with their 95% intervals (tledge.stats: Wilson for
agreement, Tango's paired score interval for Δacc), so each artifact gets one of three outcomes: within
(exit 0), over budget (exit 3) or inconclusive (exit 4, with the number of labelled images that would
settle it). The logit distance and a 100% agreement requirement are facts about the checked images, not
estimates: they are judged as observed.
`--tolerance` overrides, comma-separated: `KIND.METRIC=VALUE`, or `KIND=VALUE` for a kind's main metric
(onnx → rel_diff, fp16 → acc_drop, int8 → acc_drop); kinds are onnx (alias fp32), fp16, int8; metrics are
agreement (%), acc_drop (points), rel_diff (fraction). Example: `int8=2.0,onnx=1e-3,fp16.agreement=99`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tledge import preprocess, stats
from tledge.card import ModelCard
from tledge.errors import ExportOptionError, TledgeError
from tledge.runtime.backends.base import predict_any_batch
from tledge.stats import WITHIN

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
        if not np.isfinite(number):
            raise ExportOptionError(f"--tolerance {item!r}: {value!r} must be a finite number (not inf or nan)")
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
    labelled-folder reader training and bench use (tledge.datasets.folders.read_labelled_folder)."""
    from tledge.datasets.folders import read_labelled_folder

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
    gains: int = 0  # images the artifact gets right and the reference wrong
    losses: int = 0  # images the reference gets right and the artifact wrong
    agreement_ci: tuple[float, float] = (0.0, 100.0)  # %, 95% Wilson
    acc_delta_ci: tuple[float, float] = (-100.0, 100.0)  # points, 95% Tango paired score interval
    resolvable_drop: float = 100.0  # points: the smallest drop these images can tell from none
    per_class_delta: dict[str, float] = field(default_factory=dict)  # points, per class
    outcome: str = WITHIN  # within | over | inconclusive
    failures: list[str] = field(default_factory=list)  # what the data show is over budget
    doubts: list[str] = field(default_factory=list)  # what these images cannot settle
    images_needed: int | None = None  # labelled images that would settle the doubts (None: not by more images)

    @property
    def passed(self) -> bool:
        return self.outcome == WITHIN

    def to_dict(self) -> dict:
        return {**self.__dict__, "passed": self.passed}


TABLE_COLUMNS = ("N", "agreement % (95%)", "acc %", "Δacc pt (95%)", "resolves pt", "max rel Δlogit")


def table_cells(p: ParityResult | None) -> dict:
    """The parity columns of export's and verify's tables, formatted once (all None without a parity result)."""
    if p is None:
        return dict.fromkeys(TABLE_COLUMNS)
    return {"N": p.images,
            "agreement % (95%)": f"{p.agreement:.2f} ({p.agreement_ci[0]:.1f}-{p.agreement_ci[1]:.1f})",
            "acc %": round(p.acc_artifact, 2),
            "Δacc pt (95%)": f"{p.acc_delta:+.2f} ({p.acc_delta_ci[0]:+.2f} to {p.acc_delta_ci[1]:+.2f})",
            "resolves pt": round(p.resolvable_drop, 2),
            "max rel Δlogit": float(f"{p.max_rel_diff:.2e}")}


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
    ref_right, art_right = ref_top == labels, art_top == labels
    n = len(labels)
    agree = int(np.sum(ref_top == art_top))
    gains, losses = int(np.sum(art_right & ~ref_right)), int(np.sum(ref_right & ~art_right))
    acc_ref = 100.0 * float(np.mean(ref_right))
    acc_art = 100.0 * float(np.mean(art_right))
    agreement_ci = tuple(100.0 * v for v in stats.wilson(agree, n))
    delta_ci = tuple(100.0 * v for v in stats.paired_delta_interval(gains, losses, n))
    return {
        "images": n,
        "agreement": 100.0 * agree / n,
        "acc_reference": acc_ref,
        "acc_artifact": acc_art,
        "acc_delta": acc_art - acc_ref,
        "max_rel_diff": float(diff.max()) / scale,
        "mean_rel_diff": float(diff.mean()) / scale,
        "gains": gains,
        "losses": losses,
        "agreement_ci": agreement_ci,
        "acc_delta_ci": delta_ci,
        "resolvable_drop": 100.0 * stats.resolvable_drop(n, gains + losses),
        "per_class_delta": per_class,
    }


@dataclass
class Verdict:
    outcome: str  # within | over | inconclusive
    failures: list[str]  # over budget, in words
    doubts: list[str]  # not settled by these images, in words
    images_needed: int | None


def gate(numbers: dict, kind: str, tolerances: dict[str, dict[str, float]]) -> Verdict:
    """Judge one artifact's numbers against its kind's limits, with 95% intervals (see module doc)."""
    limits = tolerances.get(kind, {})
    n, gains, losses = numbers["images"], numbers["gains"], numbers["losses"]
    agree = numbers["agreement"] * n / 100.0
    checks: list[tuple[str, str, Callable[[float], str]]] = []  # (outcome, words, outcome at N images)
    if "agreement" in limits:
        need = limits["agreement"]
        low, high = numbers["agreement_ci"]
        if need >= 100.0 - 1e-9:  # "every image agrees" is a fact about these images, not an estimate
            observed = stats.WITHIN if agree >= n and need <= 100.0 else stats.OVER
            checks.append((observed, f"top-1 agreement {numbers['agreement']:.2f}% < {need:g}% "
                                     f"({n - round(agree)} of {n} images differ)", lambda m, o=observed: o))
        else:
            def agreement_at(m: float, rate=agree / n) -> str:
                return stats.at_least(tuple(100.0 * v for v in stats.wilson(rate * m, m)), need)

            checks.append((stats.at_least((low, high), need),
                           f"top-1 agreement {numbers['agreement']:.2f}% (95%: {low:.2f}-{high:.2f}%) vs ≥ {need:g}%",
                           agreement_at))
    if "acc_drop" in limits:
        budget = limits["acc_drop"]
        low, high = numbers["acc_delta_ci"]

        def drop_at(m: float, g=gains / n, loss=losses / n) -> str:
            lo, hi = stats.paired_delta_interval(g * m, loss * m, m)
            return stats.at_most((-100.0 * hi, -100.0 * lo), budget)

        checks.append((stats.at_most((-high, -low), budget),
                       f"Δacc {numbers['acc_delta'] + 0.0:+.2f} pt (95%: {low + 0.0:+.2f} to {high + 0.0:+.2f}) vs a budget "
                       f"of {-budget + 0.0:+g} pt", drop_at))
    if "rel_diff" in limits:
        over = numbers["max_rel_diff"] > limits["rel_diff"]
        checks.append((stats.OVER if over else stats.WITHIN,
                       f"max |Δlogit| {numbers['max_rel_diff']:.2e} of the logit scale > {limits['rel_diff']:g}",
                       lambda m: stats.WITHIN))
    outcome = stats.combine([c[0] for c in checks])
    failures = [words for result, words, _ in checks if result == stats.OVER]
    doubts = [words for result, words, _ in checks if result == stats.INCONCLUSIVE]
    needed = None
    if outcome == stats.INCONCLUSIVE:
        counts = [stats.images_needed(at, n) for result, _, at in checks if result == stats.INCONCLUSIVE]
        needed = None if None in counts else max(counts)
    return Verdict(outcome, failures, doubts, needed)


def run_parity(reference: Callable[[np.ndarray], np.ndarray], artifacts: Sequence[tuple[str, str | Path, str]],
               data: ParityData, card: ModelCard, tolerances: dict[str, dict[str, float]] | None = None,
               batch_size: int = PARITY_BATCH, device: str = "auto") -> tuple[list[ParityResult], dict]:
    """Run `reference` (PyTorch FP32: batch → logits) and each artifact (name, path, kind) on `data`.

    Returns (results, info) where info has the counts of images used and skipped.
    """
    from tledge.runtime.backends import load_backend

    tolerances = tolerances or parse_tolerance(None)
    backends = [(name, Path(path), kind, load_backend(path, device=device, **parity_backend_options(path, kind)))
                for name, path, kind in artifacts]
    try:
        logits, info = run_on_images(reference, [b for *_, b in backends], data.paths, data.labels, card,
                                      batch_size, data.source)
        results = [judge(name, path, kind, backend.name, info["reference_logits"], art, info["labels"], card, tolerances,
                         output=backend.card.output_kind)
                   for (name, path, kind, backend), art in zip(backends, logits)]
        return results, info
    finally:
        for *_, backend in backends:
            backend.close()


def judge(name: str, path, kind: str, backend_name: str, reference_logits: np.ndarray, logits: np.ndarray,
          labels: Sequence[int], card: ModelCard, tolerances: dict, output: str = "logits") -> ParityResult:
    """The numbers and the gate's verdict for one artifact's logits (the one judge of export and verify).
    output="probs": the artifact ends with a softmax and its backend gives log-probabilities, so the reference
    logits are compared as log-softmax (the same shift-free quantity)."""
    if output == "probs":
        ref = np.asarray(reference_logits, dtype=np.float64)
        ref = ref - ref.max(axis=1, keepdims=True)
        reference_logits = (ref - np.log(np.exp(ref).sum(axis=1, keepdims=True))).astype(np.float32)
    numbers = compare_logits(reference_logits, logits, labels, card.class_names)
    verdict = gate(numbers, kind, tolerances)
    return ParityResult(name, str(path), kind, backend_name, **numbers, outcome=verdict.outcome,
                        failures=verdict.failures, doubts=verdict.doubts, images_needed=verdict.images_needed)


def run_on_images(reference: Callable[[np.ndarray], np.ndarray] | None, backends: Sequence, paths: Sequence[Path],
                   labels: Sequence[int], card: ModelCard, batch_size: int, source: str) -> tuple[list, dict]:
    """Decode `paths` once, batch by batch, and run `reference` (when given) and every backend on each batch.
    Returns (per-backend logits, info): info has the labels, paths and preprocessed-tensor checksums of the
    images that decoded, the reference logits, and the skipped files."""
    from tledge.provenance.pack import tensor_sha

    ref_chunks: list[np.ndarray] = []
    art_chunks: list[list[np.ndarray]] = [[] for _ in backends]
    kept_labels: list[int] = []
    kept_paths: list[Path] = []
    input_sha: list[str] = []
    skipped: list[str] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        batch, kept = preprocess.load_batch(chunk, card)
        kept_set = set(kept)
        skipped += [str(path) for i, path in enumerate(chunk) if i not in kept_set]
        if not kept:
            continue
        if reference is not None:
            ref_chunks.append(np.asarray(reference(batch), dtype=np.float32))
        for chunks, backend in zip(art_chunks, backends):
            chunks.append(predict_any_batch(backend, batch))
        kept_labels += [labels[start + i] for i in kept]
        kept_paths += [Path(chunk[i]) for i in kept]
        input_sha += [tensor_sha(x) for x in batch]
    if not kept_labels:
        raise TledgeError(f"parity: none of the {len(paths)} images in {source} could be read")
    info = {"images": len(kept_labels), "skipped": skipped, "source": source, "labels": kept_labels,
            "paths": kept_paths, "input_sha": input_sha,
            "reference_logits": np.concatenate(ref_chunks) if ref_chunks else None}
    return [np.concatenate(chunks) for chunks in art_chunks], info


def parity_backend_options(path, kind: str) -> dict:
    """FP32 parity runs where the arithmetic is FP32: ONNX Runtime's CPU provider or CUDA with TF32 off,
    never the TensorRT EP (FP16/TF32 kernels would fail the FP32 gate for the wrong reason); the backend
    name in the result says which. FP16/INT8 artifacts run on the GPU provider they were made for."""
    from tledge.runtime.backends import backend_options

    return backend_options(path, defaults={"strict_fp32": kind == "fp32" or None})


def parity_message(results: Sequence[ParityResult]) -> str:
    """The ParityError text: what the data show is over budget, and for INT8 what to try."""
    failed = [r for r in results if r.outcome == stats.OVER]
    parts = [f"{r.name}: {'; '.join(r.failures)} on {r.images} images" for r in failed]
    message = "parity check failed (over budget): " + " | ".join(parts)
    if any(r.kind == "int8" for r in failed):
        message += (" — INT8 is over its accuracy budget; try --int8-search full (every calibration method, then "
                    "sensitive layers kept in float), more calibration images (--calib-images), --qat-epochs N, or "
                    "trt-fp16 instead; --tolerance int8=N accepts a larger drop")
    return message + " (details in parity.json)"


def inconclusive_message(results: Sequence[ParityResult], source: str) -> str:
    """The ParityInconclusive text: which artifacts these images cannot settle, and how many would."""
    unsure = [r for r in results if r.outcome == stats.INCONCLUSIVE]
    parts = []
    for r in unsure:
        need = (f"pass --parity-data with at least {r.images_needed:,} labelled images" if r.images_needed
                else "more images will not settle it (the estimate sits on the budget)")
        parts.append(f"{r.name}: {'; '.join(r.doubts)}: {r.images} images resolve a drop of "
                     f"{r.resolvable_drop:.2f} pt; {need}")
    return ("parity inconclusive (too few images to tell whether the budget is kept): " + " | ".join(parts)
            + f" (images: {source}; details in parity.json)")
