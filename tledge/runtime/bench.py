"""`tledge bench`: every artifact × backend × batch size, side by side, on the same machine and inputs.

Per row: status (ok, or failed with the reason: one row failing never stops the others), file size,
accuracy on a labelled folder (or the run's test split), latency p50/p99 per image, throughput, and speed-up
over PyTorch eager FP32 at the same batch size (that row is the baseline, speed-up 1.0).

Timing: each backend first runs `warmup` calls, then at least `iters` timed calls and at least `min_time`
seconds, every call on the SAME preprocessed batch (built once per batch size, shared by every backend),
each followed by `backend.synchronize()` before the clock is read.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tledge.card import ModelCard
from tledge.errors import TledgeError
from tledge.logs import log_note
from tledge.metrics import accuracy, latency_stats
from tledge.runtime.backends import backend_options, exported_suffixes, kind_of, load_backend, other_runtimes
from tledge.runtime.backends.base import check_batch_fits
from tledge.provenance.verdicts import parity_here, unverified_here
from tledge.runtime.options import BenchOptions
from tledge.staleness import stale_reason
from tledge.table import format_table
from tledge.timing import Clock, time_calls

log = logging.getLogger(__name__)
ROW_KEYS = ("artifact", "format", "runtime", "backend", "batch", "status", "size_mb", "accuracy", "parity", "p50_ms", "p99_ms",
            "throughput", "speedup")
BASELINE_FORMAT = "pytorch"


def discover_artifacts(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], Path | None]:
    """(artifacts, run folder or None). A run folder gives best.pt + every .onnx/.engine under run/export/."""
    items = [source] if isinstance(source, (str, Path)) else list(source)
    if len(items) == 1 and Path(items[0]).is_dir():
        run = Path(items[0])
        found = [run / "best.pt"] if (run / "best.pt").is_file() else []
        export = run / "export"
        if export.is_dir():
            found += sorted(p for p in export.iterdir() if p.suffix in exported_suffixes() and p.is_file())
        if not found:
            raise TledgeError(f"{run} has no best.pt and no export/*.onnx or *.engine to bench")
        return found, run
    paths = [Path(p) for p in items]
    for path in paths:
        if not path.exists():
            raise TledgeError(f"no such file: {path}")
        kind_of(path)  # unknown types fail here, before any timing
    return paths, None


def artifact_format(path: Path) -> str:
    return kind_of(path).backend.format_label(path)


def labelled_images(data: str | Path, class_names: Sequence[str]) -> tuple[list[Path], list[int], list[str]]:
    """A folder of class subfolders → (paths, label indices in the card's class order, skipped files), read
    by the one labelled-folder reader training and parity use (tledge.datasets.folders.read_labelled_folder)."""
    from tledge.datasets.folders import read_labelled_folder

    try:
        items, skipped = read_labelled_folder(data, class_names)
    except TledgeError as exc:
        raise TledgeError(f"--data {data}: {exc}") from None
    return [p for p, _ in items], [label for _, label in items], [f"{rel} ({why})" for rel, why in skipped]


def evaluation_set(card: ModelCard, data: str | Path | None, run: Path | None,
                   artifact: Path | None = None) -> tuple[list[Path], list[int], str]:
    """--data, else the run's test split, else the parity pack exported beside the artifact (on a device that
    got the export folder only), else none."""
    if data is not None:
        paths, labels, skipped = labelled_images(data, card.class_names)
        return paths, labels, str(data) + (f" ({len(skipped)} unreadable skipped)" if skipped else "")
    if run is not None and (run / "splits.json").is_file():
        from tledge.splits import Splits

        splits = Splits.load(run)
        if splits.items.get("test"):
            return splits.paths("test"), splits.labels("test"), f"{run}/splits.json:test"
    if artifact is not None:
        from tledge.provenance.pack import MANIFEST, PACK_DIR, read_pack

        folder = Path(artifact).parent / PACK_DIR
        if (folder / MANIFEST).is_file():
            pack = read_pack(folder)
            if pack.class_names == list(card.class_names):
                return pack.paths, pack.labels, pack.source
    return [], [], ""


def _decoded_batches(paths: Sequence[Path], card: ModelCard, batch: int, skipped: list | None = None):
    """Preprocessed batches, decoded in a 2-thread pool (unreadable images are dropped with their labels and
    named in `skipped`)."""
    from tledge.runtime.sources import ImageFilesSource
    from tledge.runtime.predict import preprocessor

    source = ImageFilesSource("data", paths, workers=2, prefetch=2 * batch, prepare=preprocessor(card))
    tensors, indices = [], []
    for item in source:
        if item.tensor is None:
            if skipped is not None:
                skipped.append({"source": item.source_id, "error": item.error or "unreadable"})
            continue
        tensors.append(item.tensor)
        indices.append(item.index)
        if len(tensors) == batch:
            yield np.stack(tensors), indices
            tensors, indices = [], []
    if tensors:
        yield np.stack(tensors), indices


def evaluate_accuracy(backend, paths: Sequence[Path], labels: Sequence[int], batch: int,
                      skipped: list | None = None) -> float:
    if backend.max_batch is not None:
        batch = min(batch, backend.max_batch)
    from tledge.progress import progress_bar

    predicted, truth = [], []
    bar = progress_bar(len(paths), f"accuracy {backend.name}", unit="img")
    for x, indices in _decoded_batches(paths, backend.card, batch, skipped):
        predicted.extend(np.argmax(backend.predict(x), axis=1).tolist())
        truth.extend(labels[i] for i in indices)
        bar.update(len(indices))
    bar.close()
    return accuracy(truth, predicted)


def timing_batch(card: ModelCard, batch: int, paths: Sequence[Path]) -> np.ndarray:
    """One fixed batch: real images when there are some (repeated to fill the batch), else seeded noise."""
    from tledge.preprocess import load_batch

    real, kept = load_batch(list(paths[:batch]), card)
    if kept:
        return np.ascontiguousarray(real[[i % len(kept) for i in range(batch)]])
    height, width = card.input_size
    return np.random.default_rng(0).standard_normal((batch, 3, height, width), dtype=np.float32)


def time_backend(backend, x: np.ndarray, iters: int, warmup: int, min_time: float, clock: Clock,
                 gpu_ms: list[float] | None = None) -> list[float]:
    """Per-call milliseconds after warm-up: at least `iters` calls and at least `min_time` seconds, each call
    synchronised (GPU work finished). Backends that time their GPU work (CUDA events) append it per call to
    `gpu_ms`."""

    def call() -> None:
        backend.predict(x)
        backend.synchronize()

    def collect(_name: str) -> None:
        if gpu_ms is not None and getattr(backend, "last_gpu_ms", None) is not None:
            gpu_ms.append(backend.last_gpu_ms)

    return time_calls({"backend": call}, rounds=iters, warmup=warmup, min_time=min_time, clock=clock,
                      after=collect)["backend"]


def _size_mb(path: Path) -> float:
    return kind_of(path).backend.artifact_bytes(path) / 1e6


def _backend_options(path: Path, threads: int | None, cache: str | None = None, fp16: bool = False,
                     batch: int | None = None, runtime: str | None = None) -> dict:
    """Bench's options where the artifact's backend takes them (one table of files mixes kinds: --threads
    means nothing to an engine); batch: the TensorRT EP's profile covers every batch size benched."""
    return backend_options(path, defaults={"threads": threads, "cache_dir": cache, "fp16": fp16 or None,
                                           "batch": batch}, runtime=runtime)


def bench_runs(artifacts: Sequence[Path]) -> list[tuple[Path, str | None]]:
    """(artifact, runtime) pairs: each file on its default runtime (None), then on every other installed runtime
    that opens it (an .onnx on OpenVINO too), so rows of one file on two runtimes stand side by side."""
    return [(path, runtime) for path in artifacts
            for runtime in [None] + [kind.name for kind in other_runtimes(path)]]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def bench(source, data: str | Path | None = None, options: BenchOptions | None = None,
          clock: Clock = time.perf_counter) -> dict:
    """Run the benchmark and return {"rows": [...], "machine": {...}, "eval_set": ..., "note": ...}."""
    options = options or BenchOptions()
    data = data if data is not None else options.data
    artifacts, run = discover_artifacts(source)
    batches = sorted({int(b) for b in options.batches})
    if not batches or batches[0] < 1:
        raise TledgeError("--batch needs positive sizes, e.g. 1,16")
    rows: list[dict] = []
    inputs: dict[int, np.ndarray] = {}  # the same timing batch for every backend
    eval_cache: dict = {}
    for path, runtime in bench_runs(artifacts):
        fmt = artifact_format(path)
        base = {"artifact": path.name, "format": fmt, "runtime": runtime or kind_of(path).name,
                "size_mb": _size_mb(path) if path.is_file() else None}
        try:
            backend = load_backend(path, options.device, **_backend_options(path, options.threads, options.cache,
                                                                             options.fp16, max(batches), runtime))
        except Exception as exc:  # noqa: BLE001 - a row fails, the table goes on
            for b in batches:
                rows.append({**base, "backend": "-", "batch": b, "status": f"failed: {_reason(exc)}"})
            log.warning(f"{path.name}: failed to load ({_reason(exc)})")
            continue
        for note in getattr(backend, "notes", ()):
            log_note(log, note, about=path.name)
        unverified = unverified_here(path, backend.name)
        if unverified:
            log.warning(unverified)
        stale = stale_reason(path, backend.card)
        if stale:
            backend.close()
            for b in batches:
                rows.append({**base, "backend": backend.name, "batch": b, "status": f"failed: stale: {stale}"})
            log.warning(f"{path.name}: refused ({stale})")
            continue
        try:
            card = backend.card
            if "set" not in eval_cache:
                eval_cache["set"] = evaluation_set(card, data, run, path)
            paths, labels, eval_name = eval_cache["set"]
            acc = None
            if paths:
                try:
                    skipped = [] if "skipped" not in eval_cache else None  # the same images for every row
                    acc = evaluate_accuracy(backend, paths, labels, options.eval_batch, skipped)
                    if skipped is not None:
                        eval_cache["skipped"] = skipped
                except Exception as exc:  # noqa: BLE001
                    log.warning(f"{path.name}: accuracy failed ({_reason(exc)})")
            for b in batches:
                row = {**base, "backend": backend.name, "provider": getattr(backend, "provider", None), "batch": b,
                       "accuracy": acc, "parity": parity_here(path, backend.name)}
                try:
                    if backend.max_batch is not None and b > backend.max_batch:
                        raise TledgeError(f"batch {b} exceeds this artifact's maximum {backend.max_batch}")
                    if b not in inputs:
                        check_batch_fits(b, card.input_size)
                        inputs[b] = timing_batch(card, b, paths)
                    gpu: list[float] = []
                    samples = time_backend(backend, inputs[b], options.iters, options.warmup, options.min_time, clock,
                                           gpu)
                    per_image = [s / b for s in samples]
                    if gpu:  # GPU compute per image from CUDA events, beside host latency (as trtexec reports)
                        row["gpu_ms"] = latency_stats([g / b for g in gpu])["p50_ms"]
                    stats = latency_stats(per_image)
                    row.update(status="ok", p50_ms=stats["p50_ms"], p99_ms=stats["p99_ms"],
                               mean_ms=stats["mean_ms"], std_ms=stats["std_ms"], calls=stats["count"],
                               throughput=1000.0 / stats["mean_ms"] if stats["mean_ms"] > 0 else None)
                except Exception as exc:  # noqa: BLE001
                    row["status"] = f"failed: {_reason(exc)}"
                rows.append(row)
                (log.info if row["status"] == "ok" else log.warning)(f"{path.name} batch {b}: {row['status']}")
        finally:
            backend.close()
    for row in rows:
        for key in ROW_KEYS:
            row.setdefault(key, None)
    note = add_speedups(rows)
    return {"rows": rows, "eval_set": eval_cache.get("set", ([], [], ""))[2] or None,
            "eval_images": len(eval_cache.get("set", ([], [], ""))[0]), "baseline": note,
            "eval_skipped": eval_cache.get("skipped", []),
            "options": {"batches": batches, "iters": options.iters, "warmup": options.warmup,
                        "min_time": options.min_time, "threads": options.threads, "device": options.device},
            "machine": machine_facts()}


def bench_out_dir(sources: Sequence[str | Path], out: str | Path | None, data: str | Path | None = None) -> Path:
    """Where bench.json goes (RUN/bench, or ./bench for a list of files), checked before any timing: a folder
    that is not an artifact and not inside --data."""
    from tledge.paths import check_output_dir, check_outputs_apart

    if out is None:
        out = Path(sources[0]) / "bench" if len(sources) == 1 and Path(sources[0]).is_dir() else Path("bench")
    out = check_output_dir(out, "--out")
    check_outputs_apart([("--out", out)], [("the --data folder", data)] +
                        [("an artifact", s) for s in sources if not Path(s).is_dir()])
    return out


def check_rows(result: dict) -> None:
    """After the table and bench.json are written: failed rows make the command fail (exit 2), naming them."""
    failed = [r for r in result["rows"] if r["status"] != "ok"]
    if not failed:
        return
    names = sorted({f"{r['artifact']} ({r['status'].removeprefix('failed: ')})" for r in failed})
    raise TledgeError(f"{len(failed)} of {len(result['rows'])} bench row(s) failed: {'; '.join(names)[:300]}")


def add_speedups(rows: list[dict]) -> str:
    """speedup = throughput / PyTorch eager FP32 throughput at the same batch size; 1.0 for that row."""
    baseline = {r["batch"]: r["throughput"] for r in rows
                if r["format"] == BASELINE_FORMAT and r["status"] == "ok" and r.get("throughput")}
    for row in rows:
        ref = baseline.get(row["batch"])
        row["speedup"] = row["throughput"] / ref if ref and row.get("throughput") else None
    if not baseline:
        return "no PyTorch (.pt) row ran, so there is no speed-up baseline"
    return "speed-up vs PyTorch eager FP32 at the same batch size"


def machine_facts() -> dict:
    import os
    import platform

    facts = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
             "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    from tledge.runtime.backends import KINDS

    for kind in KINDS:  # every other runtime's installed version, without importing it
        if kind.module not in facts and kind.module != "torch":
            try:
                facts[kind.module] = version(kind.module)
            except PackageNotFoundError:
                pass
    return facts


def format_bench_table(result: dict) -> str:
    rows = []
    for r in result["rows"]:
        ok = r["status"] == "ok"
        rows.append({
            "artifact": r["artifact"], "backend": r["backend"], "batch": r["batch"],
            "status": "ok" if ok else r["status"], "size MB": r.get("size_mb"),
            "accuracy": f"{r['accuracy'] * 100:.2f}%" if r.get("accuracy") is not None else None,
            "parity": r.get("parity"),
            "p50 ms/img": r.get("p50_ms"), "p99 ms/img": r.get("p99_ms"), "GPU ms/img": r.get("gpu_ms"),
            "img/s": f"{r['throughput']:.1f}" if r.get("throughput") else None,
            "speed-up": f"{r['speedup']:.2f}x" if r.get("speedup") else None,
        })
    if not any(r.get("GPU ms/img") is not None for r in rows):
        for r in rows:
            r.pop("GPU ms/img", None)
    text = format_table(rows, floatfmt=".3g")
    footer = [result["baseline"]]
    if result.get("eval_set"):
        skipped = result.get("eval_skipped") or []
        used = result["eval_images"] - len(skipped)
        footer.append(f"accuracy on {used} images of {result['eval_set']}"
                      + (f" ({len(skipped)} unreadable skipped, e.g. {skipped[0]['source']}: {skipped[0]['error']})"
                         if skipped else ""))
    else:
        footer.append("no accuracy: give --data DIR (class subfolders) or bench a run folder with a test split")
    return text + "\n" + "; ".join(footer)


def write_bench(result: dict, out_dir: str | Path) -> tuple[Path, Path | None]:
    """bench.json and bench.png (throughput bars per batch size; skipped when matplotlib is missing)."""
    from tledge.atomic import write_json

    from tledge.paths import clean_stale_temp_files

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(out)
    json_path = write_json(out / "bench.json", result)
    try:
        png = plot_bench(result, out / "bench.png")
    except ImportError:
        png = None
    return json_path, png


def plot_bench(result: dict, path: Path) -> Path:
    from tledge.plots import pyplot, save_figure

    plt = pyplot()
    rows = [r for r in result["rows"] if r["status"] == "ok" and r.get("throughput")]
    batches = sorted({r["batch"] for r in rows}) or [1]
    labels = list(dict.fromkeys(f"{r['artifact']}\n{r['backend']}" for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels) + 2), 4.5))
    width = 0.8 / len(batches)
    for j, b in enumerate(batches):
        values = []
        for label in labels:
            match = [r for r in rows if r["batch"] == b and f"{r['artifact']}\n{r['backend']}" == label]
            values.append(match[0]["throughput"] if match else 0.0)
        xs = np.arange(len(labels)) + (j - (len(batches) - 1) / 2) * width
        bars = ax.bar(xs, values, width, label=f"batch {b}")
        for bar, label in zip(bars, labels):
            match = [r for r in rows if r["batch"] == b and f"{r['artifact']}\n{r['backend']}" == label]
            if match and match[0].get("speedup"):
                ax.annotate(f"{match[0]['speedup']:.1f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("images / s")
    ax.set_title("tledge bench: throughput (labels: speed-up vs PyTorch FP32)")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
