"""INT8 with an accuracy budget (issue 7): MobileNetV2 at 224 px, real ImageNet weights, real scene photos.

Rows: ONNX FP32, plain INT8 (U8S8 MinMax), the searched INT8 (`--int8-budget`, val split), and optionally
QAT + search. Each INT8 row is made by `tledge.exporting.pipeline.export_run` on a real run folder
(best.pt + splits.json), exactly as `tledge export RUN ...` would; test accuracy and agreement come from its
parity check on the run's test split; latency is measured here at batch 1 and 16 (2 threads, medians).

Model: torchvision MobileNetV2 IMAGENET1K_V1, frozen, with a linear head trained on cached pooled features
of the train subset (224 px, stretch resize of the 150-px photos). Splits: seeded, stratified subsets of
intel-scenes `train/` (default 1,500 train / 500 val / 1,000 test).

    .venv/bin/python benchmarks/int8_budget.py            # ~10-15 min on 2 cores
Writes benchmarks/results/int8_budget.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    here = Path(__file__).resolve().parent
    shared = here.parent.parent / "shared"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=shared / "data" / "intel-scenes" / "train")
    p.add_argument("--weights", type=Path, default=shared / "weights" / "mobilenet_v2-b0353104.pth")
    p.add_argument("--train", type=int, default=1500)
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--calib-images", type=int, default=256)
    p.add_argument("--head-steps", type=int, default=300, help="Adam steps of the linear head on cached features")
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--methods", default=None, help="search candidates (default: tledge's)")
    p.add_argument("--qat-epochs", type=int, default=0, help="0: skip the QAT row")
    p.add_argument("--qat-lr", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters-b1", type=int, default=50)
    p.add_argument("--iters-b16", type=int, default=10)
    p.add_argument("--out", type=Path, default=here / "results" / "int8_budget.json")
    return p.parse_args(argv)


def _split(data: Path, counts: tuple[int, int, int], seed: int = 0):
    """Seeded subsets of the photos, roughly stratified (shuffle, then round-robin over classes)."""
    from tledge.preprocess import is_image_file

    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    per_class = []
    for index, name in enumerate(classes):
        files = sorted(f for f in (data / name).iterdir() if is_image_file(f))
        random.Random(seed + index).shuffle(files)
        per_class.append([(str(f.relative_to(data)), index) for f in files])
    mixed = [item for group in zip(*per_class) for item in group]  # interleave classes
    out, start = {}, 0
    for name, n in zip(("train", "val", "test"), counts):
        out[name] = mixed[start:start + n]
        start += n
    return classes, out


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch_home = Path(tempfile.mkdtemp(prefix="tledge-bench-torch-"))
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(args.weights, torch_home / "hub" / "checkpoints" / args.weights.name)
    os.environ["TORCH_HOME"] = str(torch_home)
    import torch

    torch.set_num_threads(args.threads)
    from tledge.card import ModelCard, card_from_onnx
    from tledge.checkpoint import save_checkpoint
    from tledge.errors import ParityError
    from tledge.exporting.pipeline import export_run
    from tledge.logs import captured
    from tledge.preprocess import load_image, preprocess_batch
    from tledge.runtime.backends import load_backend
    from tledge.splits import Splits
    from tledge.table import format_table
    from tledge.models.backbones import create_model

    log = lambda m: print(m, flush=True)  # noqa: E731
    started_all = time.perf_counter()
    classes, items = _split(args.data, (args.train, args.val, args.test))
    card = ModelCard("mobilenet_v2", classes, input_size=(224, 224), weights_origin="imagenet")
    work = Path(tempfile.mkdtemp(prefix="tledge-int8-budget-"))
    run = work / "run"
    run.mkdir()
    try:
        # 1. Frozen ImageNet MobileNetV2 + linear head on cached features of the train subset.
        t = time.perf_counter()
        model = create_model("mobilenet_v2", len(classes), weights="imagenet").eval()
        feats, labels = [], []
        with torch.inference_mode():
            for i in range(0, len(items["train"]), 64):
                chunk = items["train"][i:i + 64]
                images = [load_image(args.data / rel) for rel, _ in chunk]
                keep = [k for k, im in enumerate(images) if im is not None]
                feats.append(model.forward_features(torch.from_numpy(preprocess_batch([images[k] for k in keep], card))))
                labels.extend(chunk[k][1] for k in keep)
        feats, labels_t = torch.cat(feats), torch.tensor(labels)
        optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(args.head_steps):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model.head(feats), labels_t).backward()
            optimizer.step()
        head_s = time.perf_counter() - t
        log(f"head trained on {len(labels)} photos in {head_s:.0f} s")
        Splits(str(args.data.resolve()), classes, items).save(run)
        save_checkpoint(run / "best.pt", {"card": card.to_dict(), "model": model.state_dict(), "epoch": 0})

        # 2. Exports through tledge's pipeline (parity on the run's test split, int8 gate opened so every row is kept).
        common = dict(calib_images=args.calib_images, tolerance="int8=100")
        variants, timings, searches, reports = {}, {"head_s": round(head_s, 1)}, {}, {}

        def export(name, formats, **options):
            t0 = time.perf_counter()
            try:
                with captured(on_line=log):  # the export's log lines in this benchmark's log
                    result = export_run(run, formats, work / name.replace(" ", "_"), **{**common, **options})
            except ParityError as exc:  # the budget could not be met: keep the explanation, no artifact
                timings[f"{name} s"] = round(time.perf_counter() - t0, 1)
                searches[name] = {"fits": False, "explanation": str(exc)}
                log(str(exc))
                return None
            timings[f"{name} s"] = round(time.perf_counter() - t0, 1)
            return result

        plain = export("plain", "onnx,int8", calib_method="minmax")
        variants["onnx fp32"] = next(r for r in plain.rows if r.format == "onnx")
        variants["int8 minmax"] = next(r for r in plain.rows if r.format == "int8")
        searched = export("search", "int8", int8_budget=args.budget, int8_methods=args.methods)
        if searched is not None:
            variants[f"int8 search (budget {args.budget:g})"] = searched.rows[0]
        if args.qat_epochs:
            qat = export("qat", "int8", qat_epochs=args.qat_epochs, qat_lr=args.qat_lr, int8_budget=args.budget,
                         int8_methods=args.methods)
            if qat is not None:
                variants[f"int8 qat {args.qat_epochs} ep + search"] = qat.rows[0]
        for name, row in variants.items():
            facts = card_from_onnx(row.path).extra.get("int8", {})
            if "search" in facts:
                searches[name] = facts["search"]
            if "qat" in facts:
                searches.setdefault(name, {})["qat"] = facts["qat"]
            report_md = row.path.parent / "int8_report.md"
            if report_md.exists() and name != "onnx fp32":
                reports[name] = report_md.read_text()

        # 3. Latency, 2 threads, medians after warm-up.
        rng = np.random.default_rng(0)
        inputs = {b: rng.standard_normal((b, 3, 224, 224)).astype(np.float32) for b in (1, 16)}

        def median_ms(fn, batch, iters, warmup=5):  # tledge's own timing loop (tledge.timing)
            from tledge.timing import medians, time_calls

            return medians(time_calls({"call": lambda: fn(inputs[batch])}, runs=iters, warmup=warmup))["call"]

        rows = []
        for name, row in variants.items():
            backend = load_backend(row.path, device="cpu", threads=args.threads)
            b1 = median_ms(backend.predict, 1, args.iters_b1)
            b16 = median_ms(backend.predict, 16, args.iters_b16) / 16
            backend.close()
            p = row.parity
            facts = card_from_onnx(row.path).extra.get("int8", {})
            rows.append({"model": name, "test acc %": round(p.acc_artifact, 2), "Δacc pt": round(p.acc_delta, 2),
                         "agreement %": round(p.agreement, 2), "batch1 ms": round(b1, 2),
                         "batch16 ms/img": round(b16, 2), "calibration": facts.get("method", "-")
                         + (f" {facts['percentile']:g}" if facts.get("percentile") else ""),
                         "float nodes": len(facts.get("nodes_excluded", []))})
            log(f"{name}: {b1:.2f} ms batch 1, {b16:.2f} ms/img batch 16")
        fp32 = rows[0]
        for row in rows:
            row["speed-up b1"] = round(fp32["batch1 ms"] / row["batch1 ms"], 2)
            row["goal met"] = ("-" if row is fp32 else
                               "yes" if (-row["Δacc pt"] <= 1.0 and row["speed-up b1"] >= 1.3) else "no")
        report = {
            "benchmark": "int8_budget",
            "model": "mobilenet_v2 224px, torchvision IMAGENET1K_V1 frozen + linear head (cached features)",
            "splits": {k: len(v) for k, v in items.items()}, "calibration_images": args.calib_images,
            "budget_pt": args.budget, "head_steps": args.head_steps, "classes": classes, "threads": args.threads,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
            "timings_s": timings, "total_s": round(time.perf_counter() - started_all, 1),
            "rows": rows, "searches": searches, "reports_md": reports,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(format_table(rows))
        print(f"wrote {args.out} ({report['total_s']:.0f} s)")
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(torch_home, ignore_errors=True)


if __name__ == "__main__":
    main()
