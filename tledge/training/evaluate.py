"""`tledge eval`: metrics and plots of a trained model on its run's test split or any labelled folder.

The images go through the same shared preprocessing as training's validation and every runtime backend.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tledge import metrics as m
from tledge.card import ModelCard
from tledge.models.restore import load_model
from tledge.errors import TledgeError
from tledge.logs import log_result
from tledge.preprocess import load_image, resize_rgb
from tledge.splits import Splits
from tledge.training import reports
from tledge.training.dataset import ImageDataset, make_loader
from tledge.models.device import DeviceSetup, resolve_device
from tledge.training.loop import evaluate

log = logging.getLogger(__name__)

SAMPLE_IMAGES = 16


def evaluate_and_report(
    model: nn.Module,
    card: ModelCard,
    dataset: ImageDataset,
    out_dir: Path,
    setup: DeviceSetup,
    batch_size: int = 32,
) -> dict:
    """Run `dataset` through `model`; write metrics.md, confusion_matrix.png, samples.png; return metrics."""
    loader = make_loader(dataset, batch_size, False, 0, 0, 0, setup.pin_memory)
    stats, logits, labels = evaluate(model, loader, nn.CrossEntropyLoss(), setup)
    preds = logits.argmax(1)
    report = m.classification_report(labels, preds, card.class_names)
    report["loss"] = stats.loss
    report["top3_accuracy"] = m.topk_accuracy(logits, labels, 3)
    report["images_per_s"] = stats.images_per_s
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.md").write_text(reports.metrics_markdown(report) + "\n")
    reports.plot_confusion_matrix(np.asarray(report["confusion_matrix"]), card.class_names,
                                  out_dir / "confusion_matrix.png")
    _plot_samples(dataset, logits, labels, card, out_dir / "samples.png")
    log_result(log, reports.per_class_table(report))
    log_result(log, f"test accuracy {report['accuracy']:.4f}  macro F1 {report['macro']['f1']:.4f}  "
               f"({report['num_samples']} images)")
    return report


def _plot_samples(dataset: ImageDataset, logits: np.ndarray, labels: np.ndarray, card: ModelCard, path: Path):
    """A grid of test images, mistakes first so they are seen."""
    preds = logits.argmax(1)
    probs = m.softmax(logits)
    wrong = np.flatnonzero(preds != labels)
    right = np.flatnonzero(preds == labels)
    chosen = np.concatenate([wrong[: SAMPLE_IMAGES // 2], right])[:SAMPLE_IMAGES]
    images = [resize_rgb(load_image(dataset.paths[i]), card.input_size, card.resize) for i in chosen]
    reports.plot_samples(images, labels[chosen].tolist(), preds[chosen].tolist(),
                         probs[chosen, preds[chosen]].tolist(), card.class_names, path)


def eval_run(
    source: str | Path,
    data: str | Path | None = None,
    json_path: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 32,
) -> dict:
    """Evaluate a run folder (or best.pt) on its test split, or on a labelled folder with the same classes."""
    from tledge.checkpoint import BEST
    from tledge.paths import check_output_dir, check_output_file, check_outputs_apart
    from tledge.splits import SPLITS_FILE
    from tledge.datasets.folders import read_labelled_folder

    if json_path:
        check_output_file(json_path, "--json")
    source = Path(source)
    run_dir = source if source.is_dir() else source.parent
    check_outputs_apart([("--json", json_path)], [("the model", source / BEST if source.is_dir() else source),
                                                 ("the run's splits", run_dir / SPLITS_FILE if data is None else None),
                                                 ("the DATA folder", data)])
    if data is None:
        check_output_dir(run_dir / "eval", "the eval folder")
    else:
        check_output_dir(run_dir / f"eval-{Path(data).resolve().name}", "the eval folder")
    setup = resolve_device(device)
    model, card = load_model(source, str(setup.device))
    if data is None:
        splits = Splits.load(run_dir)
        paths, labels = splits.paths("test"), splits.labels("test")
        if not paths:
            raise TledgeError(f"{run_dir} has no test split; pass a labelled folder: tledge eval {source} DATA")
        out_dir = run_dir / "eval"
    else:
        items, skipped = read_labelled_folder(data, card.class_names)
        for rel, reason in skipped:
            log.warning(f"skipped {rel}: {reason}")
        paths, labels = [p for p, _ in items], [label for _, label in items]
        out_dir = run_dir / f"eval-{Path(data).resolve().name}"
    with torch.inference_mode():
        report = evaluate_and_report(model, card, ImageDataset(paths, labels, card, "none", 0), out_dir, setup,
                                     batch_size)
    report["source"] = str(source)
    report["data"] = str(data) if data is not None else "test split"
    reports.write_json(out_dir / "metrics.json", report)
    if json_path:
        reports.write_json(Path(json_path), report)
    log_result(log, f"eval results in {out_dir}")
    return report
