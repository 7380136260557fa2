"""`tledge eval ARTIFACT [DATA]` for exported artifacts (.onnx, INT8 .onnx, .engine): the same metrics files
as a run's eval (metrics.json, metrics.md, confusion_matrix.png/.csv, samples.png), computed with the
runtime backend `tledge predict` uses, so no torch is needed for ONNX and engines.

Data: DATA (a labelled folder, one subfolder per class of the artifact's card) or, when the artifact sits in
RUN/export/, that run's test split. Results: RUN/eval/<artifact>/ (or RUN/eval-<DATA>/<artifact>/); outside a
run, beside the artifact: eval/<artifact>/ or eval-<DATA>/<artifact>/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from tledge import metrics as m
from tledge.errors import TledgeError
from tledge.splits import SPLITS_FILE, Splits

SAMPLE_IMAGES = 16


def is_artifact(path: str | Path) -> bool:
    """An exported file (ONNX or engine), by the one suffix rule of tledge.runtime.backends.artifact_kind."""
    from tledge.runtime.backends import artifact_kind

    try:
        return artifact_kind(path) in ("onnxruntime", "tensorrt", "openvino")  # [issue 23 wiring] openvino
    except TledgeError:  # not an artifact suffix at all
        return False


def run_of(artifact: Path) -> Path | None:
    """RUN for RUN/export/<artifact> (a folder with splits.json above the export folder), else None."""
    run = artifact.resolve().parent.parent
    return run if (run / SPLITS_FILE).is_file() else None


def eval_artifact(artifact: str | Path, data: str | Path | None = None, json_path: str | Path | None = None,
                  device: str = "auto", batch_size: int = 32, log: Callable[[str], None] = print) -> dict:
    """Evaluate an exported artifact on its run's test split or on `data`; writes the metrics files and
    returns the metrics dict (accuracy, macro, per_class, confusion_matrix, top3_accuracy, loss, ...)."""
    from tledge.atomic import write_json
    from tledge.paths import check_output_dir, check_output_file
    from tledge.runtime.backends import load_backend

    path = Path(artifact)
    if not path.is_file():
        raise TledgeError(f"no such file: {path}")
    if json_path:
        check_output_file(json_path, "--json")
    run_dir = run_of(path)
    base = run_dir if run_dir is not None else path.parent
    if data is None and run_dir is None:
        raise TledgeError(f"{path} is not in a run's export folder (RUN/export/), so there is no test split to "
                          f"evaluate on; pass a labelled folder: tledge eval {path} DATA")
    if data is not None and not Path(data).is_dir():
        raise TledgeError(f"data folder not found: {data}")
    out_dir = check_output_dir(base / ("eval" if data is None else f"eval-{Path(data).resolve().name}") / path.name,
                               "the eval folder")
    backend = load_backend(path, device=device)
    try:
        for note in getattr(backend, "notes", ()):
            log(note)
        card = backend.card
        if data is None:
            splits = Splits.load(run_dir)
            paths, labels = splits.paths("test"), splits.labels("test")
            if not paths:
                raise TledgeError(f"{run_dir} has no test split; pass a labelled folder: tledge eval {path} DATA")
            if list(splits.class_names) != list(card.class_names):
                raise TledgeError(f"{path}: its classes {card.class_names} differ from the run's {splits.class_names}")
            source = f"test split of {run_dir}"
        else:
            from tledge.train.data import missing_classes, read_labelled_folder

            items, skipped_files = read_labelled_folder(data, card.class_names)
            for rel, reason in skipped_files:
                log(f"skipped {rel}: {reason}")
            paths, labels = [p for p, _ in items], [label for _, label in items]
            missing = missing_classes(items, card.class_names)
            if missing:
                log(f"note: no images of {', '.join(missing)} in {data}")
            source = str(data)
        log(f"eval: {path.name} ({backend.name}) on {len(paths)} images from {source}")
        logits, kept, seconds = _logits(backend, paths, batch_size)
    finally:
        backend.close()
    skipped = [str(paths[i]) for i in sorted(set(range(len(paths))) - set(kept))]
    if not kept:
        raise TledgeError(f"none of the {len(paths)} images in {source} could be read")
    y = np.asarray([labels[i] for i in kept])
    report = m.classification_report(y, logits.argmax(1), card.class_names)
    report["loss"] = float(_cross_entropy(logits, y))
    report["top3_accuracy"] = m.topk_accuracy(logits, y, 3)
    report["images_per_s"] = len(kept) / seconds if seconds > 0 else None
    report.update({"source": str(path), "artifact": path.name, "backend": backend.name,
                   "data": str(data) if data is not None else "test split", "skipped": skipped})
    _write_reports(report, logits, y, [paths[i] for i in kept], card, out_dir, log)
    write_json(out_dir / "metrics.json", report)
    if json_path:
        write_json(Path(json_path), report)
    if skipped:
        log(f"warning: {len(skipped)} unreadable image(s) skipped: {', '.join(skipped[:5])}")
    from tledge.train.reports import per_class_table

    log(per_class_table(report))
    log(f"test accuracy {report['accuracy']:.4f}  macro F1 {report['macro']['f1']:.4f}  ({len(kept)} images)")
    log(f"eval results in {out_dir}")
    return report


def _logits(backend, paths, batch_size: int) -> tuple[np.ndarray, list[int], float]:
    """Logits of every readable image (decoded and preprocessed for the artifact's card), the indices kept,
    and the seconds spent in the backend."""
    from tledge.verification.parity import predict_any_batch
    from tledge.preprocess import load_batch

    chunks, kept, seconds = [], [], 0.0
    size = min(batch_size, backend.max_batch) if backend.max_batch else batch_size
    for start in range(0, len(paths), size):
        batch, got = load_batch(paths[start:start + size], backend.card)
        if not got:
            continue
        started = time.perf_counter()
        chunks.append(predict_any_batch(backend, batch))
        seconds += time.perf_counter() - started
        kept += [start + i for i in got]
    empty = np.zeros((0, backend.card.num_classes), np.float32)
    return (np.concatenate(chunks) if chunks else empty), kept, seconds


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits.astype(np.float64) - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _write_reports(report: dict, logits, labels, paths, card, out_dir: Path, log) -> None:
    """metrics.md and confusion_matrix.csv always; the PNGs where matplotlib is installed (the train extra)."""
    from tledge.atomic import atomic_write_bytes
    from tledge.train.reports import metrics_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "metrics.md", (metrics_markdown(report) + "\n").encode())
    matrix = np.asarray(report["confusion_matrix"])
    lines = ["true\\predicted," + ",".join(card.class_names)]
    lines += [f"{name}," + ",".join(str(int(v)) for v in row) for name, row in zip(card.class_names, matrix)]
    atomic_write_bytes(out_dir / "confusion_matrix.csv", ("\n".join(lines) + "\n").encode())
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("note: matplotlib is not installed: confusion_matrix.png and samples.png left out (the matrix is in "
            "confusion_matrix.csv and metrics.json)")
        return
    from tledge.preprocess import load_image, resize_rgb
    from tledge.train import reports

    reports.plot_confusion_matrix(matrix, card.class_names, out_dir / "confusion_matrix.png")
    preds = logits.argmax(1)
    probs = m.softmax(logits)
    wrong, right = np.flatnonzero(preds != labels), np.flatnonzero(preds == labels)
    chosen = np.concatenate([wrong[: SAMPLE_IMAGES // 2], right])[:SAMPLE_IMAGES]
    images = [resize_rgb(load_image(paths[i]), card.input_size, card.resize) for i in chosen]
    reports.plot_samples(images, labels[chosen].tolist(), preds[chosen].tolist(), probs[chosen, preds[chosen]].tolist(),
                         card.class_names, out_dir / "samples.png")
