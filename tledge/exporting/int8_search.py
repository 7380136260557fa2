"""Accuracy-budgeted INT8: find a calibration and a set of float-kept layers that fit an accuracy budget.

Judged on the run's **val** split only (the test split stays for the final parity check), against the
FP32 ONNX model's own val accuracy, on the CPU flavour (U8S8, model.int8.onnx); the symmetric TensorRT
flavour gets the same decisions. A candidate fits when its val drop is within the budget; every step also
records the 95% interval of that drop (tledge.stats), so the report shows what the val split can resolve.

Two modes (`--int8-search`):
- budget (the default): candidates cheapest first (MinMax, then Percentile levels, then Entropy), stop at
  the first whose whole 95% val interval is within the budget; if none is, the one within by its estimate
  with the smallest upper bound (the most likely to pass the final check). When the val split is too small to resolve the budget even at full agreement, it
  keeps the cheapest candidate (choosing by a noisy val accuracy would select noise) and the final parity
  check says how many images a verdict needs.
- full: every candidate; among those shown within, the highest top-1 agreement with FP32 wins (agreement
  varies far less than accuracy on a small split, so choosing by it selects less noise); if none is shown
  within, as in the budget mode.
Calibration is computed once for all candidates (calibration.py: one MinMax pass, one histogram pass for
every percentile level and entropy); the val images are decoded and preprocessed once and every candidate
runs on that cached array. Latency is left out of the decision (single timings on a shared host are noise;
the final artifacts are timed interleaved).

If no calibration fits: per-group sensitivity (sensitivity.py: each block quantized alone, the rest in
float), then the most damaging groups are kept in float one at a time until the val drop fits. It stops,
and says so, when `max_groups` groups are in float or no remaining group does measurable damage.
A recipe (method, percentile, nodes kept in float) reproduces the result without searching
(`--int8-recipe FILE`, a JSON recipe or an INT8 ONNX that carries one in its card; int8_recipe.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tledge import preprocess
from tledge.errors import ExportOptionError, TledgeError

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = ("minmax", "percentile:99.9", "percentile:99.99", "percentile:99.999", "entropy")
DEFAULT_MAX_GROUPS = 8
MAX_VAL_IMAGES = 1000
EVAL_BATCH = 32


# ----------------------------------------------------------------------------------------- candidates
def parse_candidates(text: str | Sequence[str] | None) -> list[tuple[str, float | None]]:
    """"minmax,percentile:99.99,entropy" → [("minmax", None), ("percentile", 99.99), ("entropy", None)]."""
    from tledge.exporting.int8 import CALIB_METHODS, DEFAULT_PERCENTILE

    items = text.split(",") if isinstance(text, str) else list(text or DEFAULT_CANDIDATES)
    out = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        method, _, level = item.partition(":")
        if method not in CALIB_METHODS:
            raise ExportOptionError(f"--int8-methods: unknown method {method!r}; choose from {', '.join(CALIB_METHODS)}")
        if level and method != "percentile":
            raise ExportOptionError(f"--int8-methods: only percentile takes a level ({item!r})")
        try:
            pct = float(level) if level else (DEFAULT_PERCENTILE if method == "percentile" else None)
        except ValueError:
            raise ExportOptionError(f"--int8-methods: {level!r} is not a percentile") from None
        if pct is not None and not 50.0 < pct <= 100.0:
            raise ExportOptionError(f"--int8-methods: percentile must be in (50, 100], got {pct}")
        if (method, pct) not in out:
            out.append((method, pct))
    if not out:
        raise ExportOptionError("--int8-methods: no calibration method given")
    return out


def candidate_label(method: str, percentile: float | None) -> str:
    return f"{method} {percentile:g}" if percentile is not None else method


# ----------------------------------------------------------------------------------------- val data
@dataclass
class ValBatch:
    """Val images decoded and preprocessed once, kept as one array (≤ MAX_VAL_IMAGES)."""

    x: np.ndarray
    labels: np.ndarray
    source: str
    paths: list[Path]


def load_val(paths: Sequence[Path], labels: Sequence[int], card, source: str,
             max_images: int = MAX_VAL_IMAGES, seed: int = 0) -> ValBatch:
    paths, labels = list(paths), list(labels)
    if len(paths) > max_images:
        keep = sorted(np.random.default_rng(seed).choice(len(paths), max_images, replace=False).tolist())
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    height, width = card.input_size
    x = np.empty((len(paths), 3, height, width), dtype=np.float32)  # filled chunk by chunk: no stacking copy
    kept: list[int] = []
    for start in range(0, len(paths), EVAL_BATCH):
        batch, chunk_kept = preprocess.load_batch(paths[start:start + EVAL_BATCH], card)
        x[len(kept):len(kept) + len(chunk_kept)] = batch
        kept += [start + i for i in chunk_kept]
    if not kept:
        raise TledgeError(f"--int8-budget: none of the {len(paths)} val images of {source} could be read")
    x = x if len(kept) == len(x) else x[:len(kept)].copy()
    return ValBatch(x, np.asarray([labels[i] for i in kept]), source, [Path(paths[i]) for i in kept])


def onnx_logits(path: str | Path, x: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    from tledge.runtime.backends.base import predict_any_batch
    from tledge.runtime.backends import load_backend

    backend = load_backend(path, device="cpu")
    try:
        return np.concatenate([predict_any_batch(backend, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        backend.close()


# ----------------------------------------------------------------------------------------- search
SEARCH_MODES = ("budget", "full")


@dataclass
class Step:
    stage: str  # "calibration" | "fallback"
    label: str  # e.g. "percentile 99.99" or "+ features.1"
    method: str
    percentile: float | None
    nodes_excluded: list[str]
    groups_excluded: list[str]
    val_acc: float
    val_drop: float  # points below FP32 (positive = worse)
    drop_low: float  # 95% interval of the drop, points
    drop_high: float
    agreement: float
    kl: float
    seconds: float
    fits: bool  # the val drop (point estimate) is within the budget
    shown_within: bool = False  # the whole 95% interval of the val drop is within the budget

    def delta_text(self) -> str:
        """The accuracy change as every table shows it: INT8 − FP32 in points, negative is worse."""
        return f"Δacc {0.0 - self.val_drop:+.2f} pt, 95% {0.0 - self.drop_high:+.2f} to {0.0 - self.drop_low:+.2f}"

    def to_dict(self, with_nodes: bool = False) -> dict:
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        if not with_nodes:
            d["nodes_excluded"] = len(self.nodes_excluded)
        return d


@dataclass
class SearchResult:
    budget: float
    fp32_val_acc: float
    val_images: int
    val_source: str
    mode: str = "budget"
    steps: list[Step] = field(default_factory=list)
    sensitivity: list[dict] = field(default_factory=list)
    chosen: Step | None = None
    fits: bool = False
    cache_path: Path | None = None  # calibration ranges of the chosen method (reused for both flavours)
    stop_reason: str = ""
    seconds: float = 0.0
    calibration_seconds: dict = field(default_factory=dict)
    source_val_acc: float | None = None  # FP32 val accuracy of what is quantized, when it differs (QAT)

    @property
    def method(self) -> str:
        return self.chosen.method

    @property
    def percentile(self) -> float | None:
        return self.chosen.percentile

    @property
    def nodes_excluded(self) -> list[str]:
        return list(self.chosen.nodes_excluded)

    @property
    def shown_over(self) -> bool:
        """The val data show the chosen candidate over budget (its whole 95% interval is)."""
        return self.chosen.drop_low > self.budget + 1e-9

    def recipe(self) -> dict:
        return {"method": self.method, "percentile": self.percentile, "nodes_to_exclude": self.nodes_excluded,
                "groups_in_float": list(self.chosen.groups_excluded), "budget": self.budget,
                "val_drop": round(self.chosen.val_drop, 4), "source": "int8 search (val split)"}

    def to_card(self) -> dict:
        verdict = "over" if self.shown_over else ("within" if self.chosen.shown_within else "inconclusive")
        return {"budget_pt": self.budget, "mode": self.mode, "fits": self.fits, "val_verdict": verdict,
                "method": self.method,
                "percentile": self.percentile,
                "nodes_excluded": self.nodes_excluded, "groups_in_float": list(self.chosen.groups_excluded),
                "val_images": self.val_images, "val_source": self.val_source,
                "fp32_val_acc": round(self.fp32_val_acc, 4),
                "steps": [s.to_dict() for s in self.steps], "sensitivity": self.sensitivity,
                "stop_reason": self.stop_reason, "seconds": round(self.seconds, 1),
                "calibration_seconds": self.calibration_seconds,
                "source_fp32_val_acc": None if self.source_val_acc is None else round(self.source_val_acc, 4)}

    def explain(self) -> str:
        lines = [f"INT8 cannot meet the {self.budget:g}-point budget on the val split "
                 f"({self.val_images} images, FP32 {self.fp32_val_acc:.2f}%): {self.stop_reason}"]
        for s in self.steps:
            lines.append(f"  {s.stage:<11} {s.label:<26} val {s.val_acc:6.2f}% ({s.delta_text()}), "
                         f"agreement {s.agreement:6.2f}%")
        if self.source_val_acc is not None and self.fp32_val_acc - self.source_val_acc > self.budget:
            lines.append(f"note: the fine-tuned (QAT) model is already {self.fp32_val_acc - self.source_val_acc:.2f} pt "
                         "below FP32 on val before any quantization: lower --qat-lr or use fewer --qat-epochs")
        hint = "" if self.mode == "full" else " --int8-search full,"
        lines.append(f"best: {self.chosen.label} with {len(self.chosen.groups_excluded)} group(s) in float, "
                     f"{self.chosen.delta_text()}; try{hint} --qat-epochs N, a larger --int8-budget, or FP16")
        return "\n".join(lines)


def search_int8(reference_onnx: str | Path, source_onnx: str | Path, work_dir: str | Path,
                calib_paths: Sequence[Path], val: ValBatch, budget: float, candidates=None,
                max_groups: int = DEFAULT_MAX_GROUPS, calibration_source: str = "",
                mode: str = "budget") -> SearchResult:
    """Search on `val`; `reference_onnx` gives the FP32 answers, `source_onnx` is what gets quantized (the same
    file, or a QAT fine-tuned one). Quantized probes are written under `work_dir`."""
    from tledge import stats
    from tledge.exporting.calibration import Calibration
    from tledge.exporting.int8 import quantize_int8
    from tledge.exporting.sensitivity import kl_to_reference, layer_groups, measure_sensitivity

    if mode not in SEARCH_MODES:
        raise ExportOptionError(f"--int8-search must be one of {', '.join(SEARCH_MODES)} or off, got {mode!r}")
    started = time.perf_counter()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    candidates = parse_candidates(candidates)
    calibration = Calibration(source_onnx, calib_paths, work / "calibration")
    reference = onnx_logits(reference_onnx, val.x)  # FP32 val logits: computed once
    ref_right = reference.argmax(1) == val.labels
    fp32_acc = 100.0 * float(np.mean(ref_right))
    result = SearchResult(budget, fp32_acc, len(val.labels), val.source, mode)
    if Path(source_onnx) != Path(reference_onnx):  # e.g. QAT: how much of a drop is the fine-tuning's own
        source_logits = onnx_logits(source_onnx, val.x)
        result.source_val_acc = 100.0 * float(np.mean(source_logits.argmax(1) == val.labels))
        log.info(f"  int8 search: the model to quantize (fine-tuned) is {result.source_val_acc:.2f}% on val in FP32")
    n = len(val.labels)
    resolvable = 100.0 * stats.resolvable_drop(n, 0)
    log.info(f"  int8 search ({mode}): budget {budget:g} pt on {n} val images (FP32 {fp32_acc:.2f}%; these images "
             f"resolve a drop of about {resolvable:.2f} pt at full agreement)")
    counter = iter(range(10_000))

    def probe(stage, label, method, pct, nodes, groups) -> Step:
        t0 = time.perf_counter()
        path = work / f"probe-{next(counter):03d}.onnx"
        quantize_int8(source_onnx, path, calib_paths, "u8s8", method, pct, nodes, calibration_source,
                      calibration.cache_for(method, pct))
        logits = onnx_logits(path, val.x)
        art_right = logits.argmax(1) == val.labels
        acc = 100.0 * float(np.mean(art_right))
        gains, losses = int(np.sum(art_right & ~ref_right)), int(np.sum(ref_right & ~art_right))
        low, high = stats.paired_delta_interval(gains, losses, n)
        step = Step(stage, label, method, pct, sorted(nodes), list(groups), acc, fp32_acc - acc,
                    -100.0 * high, -100.0 * low,
                    100.0 * float(np.mean(logits.argmax(1) == reference.argmax(1))), kl_to_reference(reference, logits),
                    time.perf_counter() - t0, fp32_acc - acc <= budget + 1e-9, -100.0 * low <= budget + 1e-9)
        path.unlink(missing_ok=True)
        result.steps.append(step)
        log.info(f"    {stage:<11} {label:<26} val {acc:6.2f}% ({step.delta_text()}), agreement {step.agreement:6.2f}%, "
                 f"{step.seconds:.0f} s")
        return step

    def finish(reason: str) -> SearchResult:
        result.stop_reason = reason
        result.cache_path = calibration.cache_for(result.chosen.method, result.chosen.percentile)
        result.calibration_seconds = dict(calibration.seconds)
        result.seconds = time.perf_counter() - started
        return result

    # Too few val images to resolve the budget even with full agreement: comparing candidates by val accuracy
    # would select noise (one image of 24 is 4.17 pt), so the budget mode keeps the cheapest candidate and
    # lets the parity check say how many images a verdict needs. --int8-search full still searches.
    tried: list[Step] = []
    if mode == "budget" and resolvable > budget:
        method, pct = candidates[0]
        step = probe("calibration", candidate_label(method, pct), method, pct, [], [])
        if not step.drop_low > budget + 1e-9:  # not shown over: choosing among the rest would select noise
            result.chosen, result.fits = step, step.fits
            log.info(f"  int8 search: {n} val images cannot resolve a {budget:g}-pt budget (they resolve {resolvable:.2f} "
                     f"pt); keeping the cheapest candidate, {step.label}, without searching further")
            return finish(f"{n} val images resolve {resolvable:.2f} pt, more than the {budget:g}-pt budget: kept the "
                          f"cheapest candidate ({step.label}); a larger val split lets the search decide")
        log.info(f"  int8 search: {step.label} is shown over the budget even on {n} val images; searching on")
        tried.append(step)
        candidates = candidates[1:]

    # Step 1: calibration methods, in the order given (cheapest first by default). The budget mode stops at
    # the first the val data show within the budget (its whole interval); a point estimate under the budget
    # with an interval over it is what made the final check inconclusive on the test split.
    for method, pct in candidates:
        step = probe("calibration", candidate_label(method, pct), method, pct, [], [])
        tried.append(step)
        if step.shown_within and mode == "budget":
            result.chosen, result.fits = step, True
            return finish(f"{step.label} is within the budget on val (first shown within, cheapest first)")
    within = [s for s in tried if s.shown_within]
    if within:
        result.chosen, result.fits = max(within, key=lambda s: (s.agreement, -s.kl)), True
        return finish(f"{result.chosen.label}: the highest agreement of {len(within)} shown within the budget")
    fitting = [s for s in tried if s.fits]
    if fitting:  # within by estimate, none shown within: the closest to being shown (smallest upper bound)
        result.chosen, result.fits = min(fitting, key=lambda s: (s.drop_high, -s.agreement)), True
        return finish(f"{result.chosen.label}: within by its estimate, with the best worst case (Δacc 95% lower "
                      f"bound {-result.chosen.drop_high:+.2f} pt); {n} val images show none of {len(tried)} within")
    best = max(tried, key=lambda s: (s.val_acc, -s.kl))
    result.chosen = best

    # Step 2: sensitivity of each layer group (with the closest calibration), then greedy float fallback.
    groups = {g.name: g for g in layer_groups(calibration.prepared())}
    log.info(f"  int8 search: best calibration {best.label}: {best.delta_text()} against FP32; measuring the "
             f"sensitivity of {len(groups)} layer groups")
    cache = calibration.cache_for(best.method, best.percentile)

    def evaluate(nodes):
        path = work / "sensitivity.onnx"
        quantize_int8(source_onnx, path, calib_paths, "u8s8", best.method, best.percentile, nodes,
                      calibration_source, cache)
        return onnx_logits(path, val.x)

    ranked = measure_sensitivity(list(groups.values()), evaluate, reference)
    result.sensitivity = [s.to_dict() for s in ranked]
    helpful = [s for s in ranked if s.kl > 1e-6 or s.agreement < 100.0]
    chosen_groups: list[str] = []
    current = best
    for sens in helpful[:max_groups]:
        chosen_groups.append(sens.group)
        nodes = [n for g in chosen_groups for n in groups[g].nodes]
        step = probe("fallback", f"+ {sens.group} in float", best.method, best.percentile, nodes, chosen_groups)
        if (step.val_acc, -step.kl) >= (current.val_acc, -current.kl):
            current = step
        if step.fits:
            result.chosen, result.fits = step, True
            return finish(f"fits with {len(chosen_groups)} group(s) in float: {', '.join(chosen_groups)}")
    result.chosen = current
    if not helpful:
        return finish("no single layer group does measurable damage when quantized alone")
    if len(helpful) > max_groups:
        return finish(f"still over budget with the {max_groups} most sensitive groups in float "
                      f"(the limit; more float layers give back the INT8 speed)")
    return finish(f"still over budget with every helpful group ({len(helpful)}) in float")
