"""Export benchmark: MobileNetV2 at 224 px with real ImageNet weights, on real photos, in ONE run.

Measures PyTorch eager FP32 vs ONNX Runtime FP32 vs ONNX Runtime QDQ INT8 (U8S8 and symmetric S8S8, MinMax;
plus U8S8 Percentile) latency at batch 1 and 16 (2 threads, warm-up, medians), and INT8 accuracy and top-1
agreement vs FP32 on held-out intel-scenes photos, through tledge's own export, quantization and parity code.

Model: torchvision MobileNetV2 ImageNet weights, frozen; a linear head trained for a few hundred steps on
cached pooled features of --head-images training photos (so accuracy numbers are meaningful). Calibration:
--calib-images photos from that training set (the run's train split, as `tledge export` does). Evaluation:
--eval-images other photos, never seen by the head or the calibration.

    python benchmarks/export_bench.py --data ../shared/data/intel-scenes/train \
        --weights ../shared/weights/mobilenet_v2-b0353104.pth
Writes benchmarks/results/export_bench.json and prints a table.
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
    p.add_argument("--head-images", type=int, default=1200)
    p.add_argument("--calib-images", type=int, default=512)
    p.add_argument("--eval-images", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters-b1", type=int, default=60)
    p.add_argument("--iters-b16", type=int, default=12)
    p.add_argument("--out", type=Path, default=here / "results" / "export_bench.json")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch_home = Path(tempfile.mkdtemp(prefix="tledge-bench-torch-"))
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(args.weights, torch_home / "hub" / "checkpoints" / args.weights.name)
    os.environ["TORCH_HOME"] = str(torch_home)
    import torch

    torch.set_num_threads(args.threads)
    from tledge.card import ModelCard
    from tledge.exporting.int8 import quantize_int8
    from tledge.exporting.onnx_export import export_onnx
    from tledge.verification.parity import ParityData, run_parity
    from tledge.preprocess import is_image_file, load_image, preprocess_batch
    from tledge.runtime.backends import load_backend
    from tledge.table import format_table
    from tledge.models.backbones import create_model

    classes = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    items = [(f, i) for i, c in enumerate(classes) for f in sorted((args.data / c).iterdir()) if is_image_file(f)]
    random.Random(0).shuffle(items)
    head_items = items[: args.head_images]
    eval_items = items[args.head_images: args.head_images + args.eval_images]
    card = ModelCard("mobilenet_v2", classes, input_size=(224, 224), weights_origin="imagenet")
    log = lambda m: print(m, flush=True)  # noqa: E731

    # 1. Frozen ImageNet MobileNetV2 + linear head trained on cached features.
    started = time.perf_counter()
    model = create_model("mobilenet_v2", len(classes), weights="imagenet").eval()
    feats, labels = [], []
    with torch.inference_mode():
        for i in range(0, len(head_items), 64):
            chunk = head_items[i:i + 64]
            images = [load_image(p) for p, _ in chunk]
            keep = [k for k, im in enumerate(images) if im is not None]
            batch = torch.from_numpy(preprocess_batch([images[k] for k in keep], card))
            feats.append(model.forward_features(batch))
            labels.extend(chunk[k][1] for k in keep)
    feats, labels_t = torch.cat(feats), torch.tensor(labels)
    head = model.head
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(300):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(feats), labels_t).backward()
        optimizer.step()
    head_seconds = time.perf_counter() - started
    log(f"head trained on {len(labels)} photos in {head_seconds:.0f} s")

    work = Path(tempfile.mkdtemp(prefix="tledge-bench-"))
    try:
        # 2. Export and quantize with tledge's own code.
        timings = {}
        t = time.perf_counter()
        onnx_path = export_onnx(model, card, work / "model.onnx")
        timings["onnx_export_s"] = time.perf_counter() - t
        calib = [p for p, _ in head_items[: args.calib_images]]
        cache = work / "minmax.json"
        variants = {}
        for name, flavour, method in (("int8 u8s8 minmax", "u8s8", "minmax"), ("int8 s8s8 minmax", "s8s8", "minmax"),
                                      ("int8 u8s8 percentile", "u8s8", "percentile")):
            t = time.perf_counter()
            variants[name] = quantize_int8(onnx_path, work / f"{name.replace(' ', '_')}.onnx", calib, flavour, method,
                                           calibration_source="intel-scenes head-training photos",
                                           calibration_cache=cache if method == "minmax" else None)
            timings[f"{name} quantize_s"] = time.perf_counter() - t
            log(f"{name}: {timings[f'{name} quantize_s']:.0f} s")

        # 3. Accuracy and agreement on held-out photos (tledge.verification.parity).
        def reference(batch):
            with torch.inference_mode():
                return model(torch.from_numpy(batch)).numpy()

        artifacts = [("onnx fp32", onnx_path, "fp32")] + [(n, p, "int8") for n, p in variants.items()]
        data = ParityData([p for p, _ in eval_items], [label for _, label in eval_items], "intel-scenes held out")
        results, info = run_parity(reference, artifacts, data, card, device="cpu")
        parity = {r.name: r for r in results}
        log(f"parity on {info['images']} held-out photos done")

        # 4. Latency, 2 threads, medians after warm-up.
        rng = np.random.default_rng(0)
        inputs = {b: rng.standard_normal((b, 3, 224, 224)).astype(np.float32) for b in (1, 16)}

        def median_ms(fn, batch, iters, warmup=5):  # tledge's own timing loop (tledge.timing)
            from tledge.timing import medians, time_calls

            return medians(time_calls({"call": lambda: fn(inputs[batch])}, runs=iters, warmup=warmup))["call"]

        def torch_fn(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x))

        runners = {"pytorch eager fp32": torch_fn}
        backends = {}
        for name, path, _ in artifacts:
            backends[name] = load_backend(path, device="cpu", threads=args.threads)
            runners[name.replace("onnx fp32", "ort fp32").replace("int8", "ort int8")] = backends[name].predict
        rows = []
        for name, fn in runners.items():
            b1 = median_ms(fn, 1, args.iters_b1)
            b16 = median_ms(fn, 16, args.iters_b16) / 16
            source = name.replace("ort fp32", "onnx fp32").replace("ort int8", "int8")
            p = parity.get(source)
            rows.append({"runtime": name, "batch1 ms": round(b1, 2), "batch16 ms/img": round(b16, 2),
                         "acc %": round(p.acc_artifact, 2) if p else round(results[0].acc_reference, 2),
                         "Δacc pt": round(p.acc_delta, 2) if p else 0.0,
                         "agreement %": round(p.agreement, 2) if p else 100.0})
            log(f"{name}: {b1:.2f} ms batch 1, {b16:.2f} ms/img batch 16")
        for backend in backends.values():
            backend.close()
        fp32 = next(r for r in rows if r["runtime"] == "ort fp32")
        for row in rows:
            row["speed-up vs ort fp32 (b1)"] = round(fp32["batch1 ms"] / row["batch1 ms"], 2)
        report = {
            "benchmark": "export_bench",
            "model": "mobilenet_v2 224px, torchvision IMAGENET1K_V1 frozen + linear head (cached features)",
            "head_training_images": len(labels), "calibration_images": len(calib),
            "eval_images": info["images"], "classes": classes, "threads": args.threads,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "rows": rows,
            "parity": {r.name: {k: v for k, v in r.to_dict().items() if k != "artifact"} for r in results},
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(format_table(rows))
        print(f"wrote {args.out}")
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(torch_home, ignore_errors=True)


if __name__ == "__main__":
    main()
