"""Calibrate once, serve every method: MinMax, any number of Percentile levels, and Entropy.

ONNX Runtime's own calibrators run the images through the model once per method and per percentile
level, and their histogram building dominates (156-160 s per Percentile level on 512 photos at 224 px,
FIELD-NOTES). Here:

1. MinMax pass: ONNX Runtime's MinMax calibrator (cheap: ReduceMin/ReduceMax outputs). Its ranges are the
   MinMax calibration, and they fix each tensor's histogram range for step 2.
2. One histogram pass (only when a histogram method is asked for): every calibrated tensor becomes a
   graph output, and each batch adds into one fine histogram per tensor (HIST_BINS bins over ±max|x|, a
   fixed range, so one vectorised bincount per tensor and batch). The pass is pipelined: a worker thread
   runs batch k+1 in ONNX Runtime (which releases the GIL) while batch k is counted, the counting reuses
   its work buffers (no fresh 100-MB arrays, no page faults per tensor and batch), and the images are not
   decoded again: the MinMax pass's preprocessed batches are kept (up to KEEP_DECODED_BYTES).
3. Thresholds come from ONNX Runtime's own code (`HistogramCollector.compute_percentile` /
   `compute_entropy`) fed with histograms in its layout: Percentile uses |x| (ONNX Runtime's default for
   it), Entropy signed values at ENTROPY_BINS. Every percentile level reuses the same histogram.

Each result is written with `save_tensors_data` as ONNX Runtime's calibration cache, so `quantize_static`
(calibration_cache_path=) quantizes without calibrating again. Bin edges differ from ONNX Runtime's
incremental histograms, so a Percentile range can differ from its own by up to one bin width (1/2048 of
the tensor's range).

Why tledge's Entropy thresholds differ from ONNX Runtime's own Entropy calibration (checked in ONNX Runtime
1.32, quantization/calibrate.py and quantize.py): `quantize_static` builds its EntropyCalibrater with
num_bins=128 and num_quantized_bins=128 (its extra_options pass neither through). The first batch sets 128
bins over ±max|x| of that batch; a later batch with a larger max|x| adds bins of the same width on both
sides, so the histogram grows with the data. The KL search tries thresholds from num_quantized_bins/2 bins
out to the histogram's edge, so with 128 bins it has a single candidate, the whole range: the result is
then the observed min/max, MinMax in all but name. Only when later batches widened the histogram does it
choose, and then only between the first batch's max|x| and the final one. Here the histogram spans the
final ±max|x| from the start, in ENTROPY_BINS=256 bins with 128 quantized bins, so the search weighs 65
thresholds from half the range to all of it and can clip rare outliers, which is what Entropy calibration
is for.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from tledge.card import card_from_onnx
from tledge.errors import TledgeError

log = logging.getLogger(__name__)

HIST_BINS = 4096  # signed bins over [-a, a]; folded to 2048 bins of |x| for Percentile
ENTROPY_BINS = 256  # signed bins: thresholds searched down to half the range (ONNX Runtime's search is O(bins²) Python)
ENTROPY_QUANTIZED_BINS = 128
KEEP_DECODED_BYTES = 1 << 30  # preprocessed calibration batches kept in memory between the passes up to this


class Calibration:
    """The calibration caches of one model and one image set, computed on demand and at most once."""

    def __init__(self, fp32_onnx: str | Path, images: Sequence[Path], work_dir: str | Path):
        self.fp32_onnx = Path(fp32_onnx)
        self.images = list(images)
        self.work = Path(work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.card = card_from_onnx(self.fp32_onnx)
        self._prepared: Path | None = None
        self._ranges = None  # TensorsData of the MinMax pass
        self._hist: dict[str, np.ndarray] | None = None
        self._decoded: list[dict] | None = None  # preprocessed batches kept for the second pass
        self.seconds: dict[str, float] = {}  # what each pass cost (for the report and the benchmark)

    # ------------------------------------------------------------------------------------- public
    def cache_for(self, method: str, percentile: float | None = None) -> Path:
        """ONNX Runtime calibration cache (JSON) for `method` (percentile level for "percentile")."""
        from tledge.exporting.int8 import DEFAULT_PERCENTILE

        if method == "percentile" and percentile is None:
            percentile = DEFAULT_PERCENTILE
        path = self.work / f"calibration-{method}-{percentile or 0:g}.json"
        if path.is_file():
            return path
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData, save_tensors_data

        ranges = self.minmax_ranges()
        if method == "minmax":
            save_tensors_data(ranges, path)
            return path
        histograms = self.histograms()
        started = time.perf_counter()
        if method == "percentile":
            data = _percentile_thresholds(ranges, histograms, float(percentile))
            save_tensors_data(TensorsData(CalibrationMethod.Percentile, data), path)
        elif method == "entropy":
            data = _entropy_thresholds(ranges, histograms)
            save_tensors_data(TensorsData(CalibrationMethod.Entropy, data), path)
        else:
            raise TledgeError(f"unknown calibration method {method!r}")
        self.seconds[f"thresholds {method} {percentile or ''}".strip()] = round(time.perf_counter() - started, 2)
        return path

    # ------------------------------------------------------------------------------------- passes
    def prepared(self) -> Path:
        """The model as `quantize_static` sees it (after ONNX Runtime's pre-processing): tensor names match."""
        if self._prepared is None:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            path = self.work / "prepared.onnx"
            try:
                quant_pre_process(str(self.fp32_onnx), str(path), skip_symbolic_shape=False)
            except Exception:  # noqa: BLE001 - same fallback as int8.quantize_int8
                quant_pre_process(str(self.fp32_onnx), str(path), skip_symbolic_shape=True)
            self._prepared = path
        return self._prepared

    def _reader(self):
        import onnx

        from tledge.exporting.int8 import ImageCalibrationReader, _fixed_batch

        fixed = _fixed_batch(onnx.load(str(self.fp32_onnx), load_external_data=False))
        reader = ImageCalibrationReader(self.images, self.card, self.card.input_name, fixed_batch=fixed)
        if len(reader) == 0:
            raise TledgeError(f"INT8 calibration: no full batch of {fixed} images; export with a dynamic batch")
        return reader

    def _batches(self):
        """The preprocessed calibration batches: decoded on the first pass, then from memory when they fit in
        KEEP_DECODED_BYTES (512 photos at 224 px: 308 MB), else decoded again."""
        if self._decoded is not None:
            yield from self._decoded
            return
        kept: list[dict] | None = []
        size = 0
        reader = self._reader()
        while (inputs := reader.get_next()) is not None:
            size += sum(v.nbytes for v in inputs.values())
            kept = kept if kept is not None and size <= KEEP_DECODED_BYTES else None
            if kept is not None:
                kept.append(inputs)
            yield inputs
        self._decoded = kept

    def _outputs(self, names: list[str]):
        """An iterator of each batch's values of `names` (every calibrated tensor made a graph output).
        Pipelined: a worker thread runs batch k+1 in ONNX Runtime (which releases the GIL) while the caller
        handles batch k, so the second core is not idle while numpy counts on one."""
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(self.prepared()))
        existing = {o.name for o in model.graph.output}
        for name in names:
            if name not in existing:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        augmented = self.work / "augmented-all.onnx"
        onnx.save(model, str(augmented))
        session = ort.InferenceSession(str(augmented), providers=["CPUExecutionProvider"])
        batches = self._batches()

        def run_next():
            inputs = next(batches, None)
            return None if inputs is None else session.run(names, inputs)

        with ThreadPoolExecutor(max_workers=1) as worker:
            pending = worker.submit(run_next)
            while (values := pending.result()) is not None:
                pending = worker.submit(run_next)
                yield values
                del values

    def minmax_ranges(self):
        """Pass 1: ONNX Runtime's MinMax calibrator, one batch per call (bounded memory); the batches it sees
        are kept for the histogram pass (see `_batches`)."""
        if self._ranges is None:
            from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

            from tledge.exporting.int8 import _quiet

            started = time.perf_counter()
            with _quiet():
                calibrator = create_calibrator(self.prepared(), _op_types(), str(self.work / "augmented-minmax.onnx"),
                                               calibrate_method=CalibrationMethod.MinMax)
                for inputs in self._batches():
                    calibrator.collect_data(_OneBatch(inputs))
                self._ranges = calibrator.compute_data()
            self.seconds["minmax pass"] = round(time.perf_counter() - started, 2)
            log.debug(f"  calibration: MinMax pass over {len(self.images)} images, {len(self._ranges.data)} tensors, "
                      f"{self.seconds['minmax pass']:.0f} s")
        return self._ranges

    def histograms(self) -> dict[str, np.ndarray]:
        """Pass 2: one fine signed histogram (HIST_BINS over ±max|x|) per calibrated tensor."""
        if self._hist is None:
            ranges = self.minmax_ranges()
            started = time.perf_counter()
            names = list(ranges.data)
            limits = {n: _extremes(ranges, n)[2] for n in names}
            hist = {n: np.zeros(HIST_BINS, dtype=np.int64) for n in names}
            scratch = _Scratch()
            for batch in self._outputs(names):
                for name, values in zip(names, batch):
                    hist[name] += _fixed_range_histogram(values, limits[name], scratch)
            self._hist = hist
            self.seconds["histogram pass"] = round(time.perf_counter() - started, 2)
            log.debug(f"  calibration: one histogram pass for every percentile and entropy, "
                      f"{self.seconds['histogram pass']:.0f} s")
        return self._hist


# ----------------------------------------------------------------------------------------- helpers
def _op_types() -> list[str]:
    """The op types quantize_static quantizes (and so calibrates) when none are given."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


class _OneBatch:
    """A CalibrationDataReader of one batch (ONNX Runtime's calibrator reads until None)."""

    def __init__(self, inputs: dict):
        self.inputs: dict | None = inputs

    def get_next(self) -> dict | None:
        inputs, self.inputs = self.inputs, None
        return inputs


class _Scratch:
    """Reusable work buffers for `_fixed_range_histogram` (fresh 100-MB arrays per tensor and batch cost
    page faults and memory traffic; reused ones cost neither)."""

    def __init__(self):
        self.scaled = np.empty(0, dtype=np.float32)
        self.index = np.empty(0, dtype=np.intp)

    def buffers(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.scaled.size < size:
            self.scaled = np.empty(size, dtype=np.float32)
            self.index = np.empty(size, dtype=np.intp)
        return self.scaled[:size], self.index[:size]


def _fixed_range_histogram(values: np.ndarray, limit: float, scratch: _Scratch | None = None) -> np.ndarray:
    """Counts of `values` in HIST_BINS equal bins over [-limit, limit] (values outside go to the end bins).

    Float scaling and clipping in place, then the bin index is written straight into an intp buffer, which
    `np.bincount` takes without the copy it makes of any other integer type; with `scratch` no buffer is
    allocated at all. NaNs are not counted."""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if limit <= 0:
        counts = np.zeros(HIST_BINS, dtype=np.int64)
        counts[HIST_BINS // 2] = flat.size
        return counts
    scaled, index = (scratch or _Scratch()).buffers(flat.size)
    np.multiply(flat, np.float32(HIST_BINS / (2.0 * limit)), out=scaled)
    np.add(scaled, np.float32(HIST_BINS / 2), out=scaled)
    np.clip(scaled, 0, HIST_BINS - 1, out=scaled)
    with np.errstate(invalid="ignore"):  # a NaN casts to a negative index, caught below
        np.copyto(index, scaled, casting="unsafe")  # truncation: the bin below each value
    try:
        return np.bincount(index, minlength=HIST_BINS)[:HIST_BINS]
    except ValueError:  # a NaN among the values
        return np.bincount(index[~np.isnan(scaled)], minlength=HIST_BINS)[:HIST_BINS]


def _edges(low: float, high: float, bins: int) -> np.ndarray:
    return np.linspace(low, high, bins + 1, dtype=np.float32)


def _extremes(ranges, name: str) -> tuple[np.ndarray, np.ndarray, float]:
    low, high = ranges[name].range_value  # 0-d or (1,) arrays
    low = np.asarray(np.min(np.asarray(low, dtype=np.float32)), dtype=np.float32)
    high = np.asarray(np.max(np.asarray(high, dtype=np.float32)), dtype=np.float32)
    return low, high, max(abs(float(low)), abs(float(high)))


def _percentile_thresholds(ranges, histograms: dict[str, np.ndarray], percentile: float) -> dict:
    """ONNX Runtime's percentile rule (on |x|, clamped to the observed min/max) on the folded histograms."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    half = HIST_BINS // 2
    collector = HistogramCollector("percentile", True, half, ENTROPY_QUANTIZED_BINS, percentile, "same")
    for name, signed in histograms.items():
        low, high, limit = _extremes(ranges, name)
        absolute = signed[half:] + signed[:half][::-1]
        collector.histogram_dict[name] = (absolute, _edges(0.0, limit, half), low, high)
    from tledge.exporting.int8 import _quiet

    with _quiet():
        return collector.compute_percentile()


def _entropy_thresholds(ranges, histograms: dict[str, np.ndarray]) -> dict:
    """ONNX Runtime's KL-divergence threshold search on signed histograms of ENTROPY_BINS bins."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    collector = HistogramCollector("entropy", False, ENTROPY_BINS, ENTROPY_QUANTIZED_BINS, 99.999, "same")
    for name, signed in histograms.items():
        low, high, limit = _extremes(ranges, name)
        coarse = signed.reshape(ENTROPY_BINS, -1).sum(axis=1)
        collector.histogram_dict[name] = (coarse, _edges(-limit, limit, ENTROPY_BINS), low, high,
                                          np.float32(limit))
    from tledge.exporting.int8 import _quiet

    with _quiet():
        return collector.compute_entropy()
