"""The predict loop: source → preprocess (the shared function) → backend.predict in batches → softmax → top-k.

Latency is measured per stage, after warm-up. An item's clock starts when the frame exists: for a live
source when the frame has arrived (after the blocking wait for it, which is the frame period, not
latency), for files and video files when reading it begins.
- capture/decode (per item): live: turning the arrived frame into RGB; files: reading and decoding it;
- preprocess (per item): `tledge.preprocess.preprocess_rgb`, plus its share of stacking the batch;
- queue wait (per item): from decoded and preprocessed to its batch starting: the decode pool running
  ahead, the batch filling up, a live frame waiting while the model is busy with the previous one;
- inference (per batch, and per image = batch time / batch size): `backend.predict` then
  `backend.synchronize()`, so queued GPU work is finished before the clock is read;
- gpu compute (per batch, engines): the GPU's own time from CUDA events (`backend.last_gpu_ms`);
- postprocess (per batch): softmax and top-k;
- service (per item): the work done for it: capture/decode + preprocess + its batch's inference and
  postprocess (a result exists only when its whole batch is done);
- end to end (per item): from the clock start to its top-k being ready = service + queue wait (+ the
  hand-over between threads).

The clock is injectable (`clock=`, time.perf_counter by default) so the statistics can be tested exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np

from tledge.metrics import latency_stats, softmax
from tledge.preprocess import preprocess_rgb
from tledge.runtime.backends.base import check_batch_fits
from tledge.runtime.sources import Clock, Item, Source

STAGES = ("capture_decode", "preprocess", "queue_wait", "inference", "inference_per_image", "gpu_compute",
          "postprocess", "service",
          "end_to_end")


@dataclass
class PredictOptions:
    topk: int = 5
    batch: int = 1
    warmup: int = 3  # dummy batches run before timing starts
    max_frames: int | None = None  # stop after this many items (frames or images), skipped ones included


class Sink:
    """Receives every prediction: `write(record, item, status)`, then `close()`."""

    def write(self, record: dict, item: Item, status: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class StageTimes:
    capture_decode: list[float] = field(default_factory=list)
    preprocess: list[float] = field(default_factory=list)
    inference: list[float] = field(default_factory=list)  # per batch
    inference_per_image: list[float] = field(default_factory=list)  # per batch, divided by its size
    gpu_compute: list[float] = field(default_factory=list)  # per batch, CUDA events (TensorRT engines)
    postprocess: list[float] = field(default_factory=list)  # per batch
    queue_wait: list[float] = field(default_factory=list)  # per item
    service: list[float] = field(default_factory=list)  # per item
    end_to_end: list[float] = field(default_factory=list)

    def stats(self) -> dict:
        return {name: latency_stats(getattr(self, name)) for name in STAGES}


def topk_records(probs: np.ndarray, class_names: Sequence[str], k: int) -> list[list[dict]]:
    """Per row: the k most probable classes as [{"label", "index", "prob"}], most probable first."""
    k = max(1, min(int(k), probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"label": class_names[j], "index": int(j), "prob": float(row[j])} for j in idx]
            for row, idx in zip(probs, order)]


class _RateMeter:
    """Smoothed frames per second and latency, for the overlay."""

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self.fps = 0.0
        self.latency_ms = 0.0
        self._last: float | None = None

    def update(self, now: float, latency_ms: float, count: int = 1) -> None:
        if self._last is not None and now > self._last:
            rate = count / (now - self._last)
            self.fps = rate if self.fps == 0.0 else (1 - self.alpha) * self.fps + self.alpha * rate
        self._last = now
        self.latency_ms = latency_ms if self.latency_ms == 0.0 else (1 - self.alpha) * self.latency_ms + self.alpha * latency_ms


def warm_up(backend, batch: int, iterations: int) -> None:
    """Run the backend on zeros so lazy initialisation, allocator growth and autotuning are not timed."""
    if iterations <= 0:
        return
    height, width = backend.card.input_size
    size = batch if backend.max_batch is None else min(batch, backend.max_batch)
    dummy = np.zeros((size, 3, height, width), dtype=np.float32)
    for _ in range(iterations):
        backend.predict(dummy)
    backend.synchronize()


def _known_items(source, max_frames: int | None) -> list[int]:
    """How many items the run can see at most, where that is known (files, --max-frames); [] otherwise."""
    known = [max_frames] if max_frames else []
    if getattr(source, "kind", None) == "images":
        try:
            known.append(max(1, len(source)))
        except TypeError:
            pass
    return known


def predict_stream(backend, source: Source | Iterable[Item], options: PredictOptions | None = None,
                   sinks: Sequence[Sink] = (), clock: Clock = time.perf_counter) -> dict:
    """Run the loop until the source ends, `max_frames` is reached or Ctrl-C; return the summary dict."""
    options = options or PredictOptions()
    card = backend.card
    batch_size = max(1, int(options.batch))
    if backend.max_batch is not None:
        batch_size = min(batch_size, backend.max_batch)
    batch_size = min([batch_size, *_known_items(source, options.max_frames)])  # no batch (nor warm-up) beyond the data
    check_batch_fits(batch_size, card.input_size)
    times = StageTimes()
    meter = _RateMeter()
    skipped: list[dict] = []
    counters = {"items": 0, "seen": 0}
    interrupted = False

    warm_up(backend, batch_size, options.warmup)

    def run_batch(items: list[Item]) -> None:
        start = clock()
        batch = np.stack([it.tensor for it in items]) if len(items) > 1 else items[0].tensor[None]
        stacked = clock()
        logits = backend.predict(batch)
        backend.synchronize()
        inferred = clock()
        if getattr(backend, "last_gpu_ms", None) is not None:
            times.gpu_compute.append(backend.last_gpu_ms)
        probs = softmax(logits.astype(np.float32, copy=False))
        tops = topk_records(probs, card.class_names, options.topk)
        done = clock()
        share = (stacked - start) * 1000.0 / len(items)
        infer_ms = (inferred - stacked) * 1000.0
        times.inference.append(infer_ms)
        times.inference_per_image.append(infer_ms / len(items))
        times.postprocess.append((done - inferred) * 1000.0)
        batch_ms = (done - start) * 1000.0
        for item, top in zip(items, tops):
            latency = (done - item.timestamp) * 1000.0
            times.capture_decode.append(item.decode_ms)
            times.preprocess.append(item.preprocess_ms + share)
            times.queue_wait.append(max(0.0, (start - (item.ready if item.ready is not None else start)) * 1000.0))
            times.service.append(item.decode_ms + item.preprocess_ms + batch_ms)
            times.end_to_end.append(latency)
            record = {
                "index": counters["items"],
                "source": item.source_id,
                "label": top[0]["label"],
                "prob": top[0]["prob"],
                "topk": top,
                "latency_ms": latency,
                "batch": len(items),
            }
            counters["items"] += 1
            meter.update(done, latency, 1)
            status = {"fps": meter.fps, "latency_ms": meter.latency_ms, "dropped": getattr(source, "dropped", 0),
                      "stage_ms": {"capture_decode": item.decode_ms, "preprocess": times.preprocess[-1],
                                   "queue_wait": times.queue_wait[-1], "inference": times.inference_per_image[-1],
                                   "postprocess": times.postprocess[-1], "service": times.service[-1],
                                   "end_to_end": latency}}
            for sink in sinks:
                sink.write(record, item, status)

    started = clock()
    pending: list[Item] = []
    iterator = iter(source)
    try:
        for item in iterator:
            if options.max_frames is not None and counters["seen"] >= options.max_frames:
                break
            counters["seen"] += 1
            if item.frame is None:
                skipped.append({"source": item.source_id, "error": item.error or "unreadable"})
                continue
            if item.tensor is None:
                t0 = clock()
                item.tensor = preprocess_rgb(item.frame, card)
                spent = clock() - t0
                item.preprocess_ms = spent * 1000.0
                item.ready = (item.ready if item.ready is not None else t0) + spent  # preprocessing is work, not a wait
            pending.append(item)
            if len(pending) >= batch_size:
                run_batch(pending)
                pending = []
        if pending:
            run_batch(pending)
            pending = []
    except KeyboardInterrupt:
        interrupted = True
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        for sink in sinks:
            sink.close()
    wall = clock() - started
    return build_summary(backend, source, times, counters["items"], skipped, wall, batch_size, options,
                         interrupted)


def build_summary(backend, source, times: StageTimes, items: int, skipped: list[dict], wall_s: float,
                  batch_size: int, options: PredictOptions, interrupted: bool) -> dict:
    skipped = skipped + [{"source": path, "error": reason} for path, reason in getattr(source, "ignored", [])]
    return {
        "backend": backend.name,
        "provider": getattr(backend, "provider", None),
        "source": source.spec if hasattr(source, "spec") else type(source).__name__,  # never repr() a list of frames
        "source_kind": getattr(source, "kind", "items"),
        "items": items,
        "skipped": len(skipped),
        "skipped_items": skipped,
        "dropped_frames": int(getattr(source, "dropped", 0)),
        "stop_reason": getattr(source, "stop_reason", None),
        "interrupted": interrupted,
        "batch": batch_size,
        "warmup_batches": options.warmup,
        "wall_s": wall_s,
        "fps": items / wall_s if wall_s > 0 else 0.0,
        "stages_ms": times.stats(),
    }


def format_summary(summary: dict) -> str:
    """The end-of-run summary: one table of per-stage latency, then counts."""
    from tledge.table import format_table

    rows = []
    for stage, stats in summary["stages_ms"].items():
        if not stats.get("count"):
            continue
        rows.append({"stage": stage.replace("_", " "), "n": stats["count"], "mean ms": stats["mean_ms"],
                     "p50 ms": stats["p50_ms"], "p90 ms": stats["p90_ms"], "p99 ms": stats["p99_ms"]})
    provider = f", provider {summary['provider']}" if summary.get("provider") else ""
    lines = [f"{summary['backend']} on {summary['source']} (batch {summary['batch']}{provider})"]
    if rows:
        lines.append(format_table(rows, floatfmt=".2f"))
    lines.append(f"items {summary['items']}  fps {summary['fps']:.1f}  skipped {summary['skipped']}  "
                 f"dropped frames {summary['dropped_frames']}  wall {summary['wall_s']:.2f} s")
    for entry in summary["skipped_items"][:20]:
        lines.append(f"  skipped {entry['source']}: {entry['error']}")
    if summary["skipped"] > 20:
        lines.append(f"  … and {summary['skipped'] - 20} more skipped (see --summary-json)")
    if summary.get("stop_reason"):
        lines.append(f"stopped: {summary['stop_reason']}")
    if summary.get("interrupted"):
        lines.append("interrupted (Ctrl-C): summary of what ran")
    return "\n".join(lines)


def preprocessor(card) -> Callable[[np.ndarray], np.ndarray]:
    """The card's preprocessing as a one-argument function, for the source's decode pool."""
    return partial(preprocess_rgb, card=card)
