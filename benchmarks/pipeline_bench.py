"""End-to-end folder throughput vs model-only throughput, on the same photos, in one run.

    .venv/bin/python benchmarks/pipeline_bench.py [--data ../shared/data/intel-scenes/train] [--images 1008]
        [--size 224] [--batch 16] [--threads 2] [--rounds 3]

- model only: ONNX Runtime on batches that were decoded and preprocessed beforehand (the ceiling);
- end to end: the real predict loop (`tledge.runtime.predict.predict_stream` over an image-files source: decode
  in a 2-thread pool that prefetches the next batches while ONNX Runtime runs, shared preprocessing, batching,
  softmax, top-k), for the same files.
Ratio = end-to-end img/s ÷ model-only img/s. Rounds alternate the two so drift hits both; medians reported.
MobileNetV2 (width 1.0, random init: speed only) exported to ONNX opset 17. Writes benchmarks/results/pipeline_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tledge.card import ModelCard, embed_in_onnx  # noqa: E402
from tledge.preprocess import is_image_file, load_image, preprocess_batch  # noqa: E402
from tledge.runtime.backends.onnxrt import OnnxRuntimeBackend  # noqa: E402
from tledge.runtime.predict import PredictOptions, predict_stream, preprocessor  # noqa: E402
from tledge.runtime.sources import ImageFilesSource  # noqa: E402


def pick_images(root: Path, count: int) -> list[Path]:
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def export_model(classes: list[str], size: int, folder: Path) -> Path:
    import onnx
    import torch

    from tledge.train.backbones import create_model

    torch.manual_seed(0)
    model = create_model("mobilenet_v2", len(classes)).eval()
    card = ModelCard("mobilenet_v2", classes, input_size=(size, size), weights_origin="random (speed benchmark)")
    path = folder / "model.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, size, size), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    proto = onnx.load(str(path))
    embed_in_onnx(proto, card)
    onnx.save(proto, str(path))
    return path


def model_only(backend, batches: list[np.ndarray]) -> float:
    start = time.perf_counter()
    count = 0
    for x in batches:
        backend.predict(x)
        count += x.shape[0]
    return count / (time.perf_counter() - start)


def end_to_end(backend, paths: list[Path], batch: int, workers: int) -> tuple[float, dict]:
    source = ImageFilesSource("bench", paths, workers=workers, prefetch=2 * batch, prepare=preprocessor(backend.card))
    summary = predict_stream(backend, source, PredictOptions(topk=5, batch=batch, warmup=0))
    assert summary["items"] == len(paths), summary["skipped_items"][:3]
    return summary["items"] / summary["wall_s"], summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/intel-scenes/train"))
    parser.add_argument("--images", type=int, default=1008)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/pipeline_bench.json"))
    args = parser.parse_args()

    root = Path(args.data)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths = pick_images(root, args.images)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_model(classes, args.size, Path(tmp))
        variants = {}
        for spin in (None, False):
            backend = OnnxRuntimeBackend(onnx_path, "cpu", threads=args.threads, spin=spin)
            card = backend.card
            pre = time.perf_counter()
            images = [load_image(p) for p in paths]
            batches = [preprocess_batch(images[i:i + args.batch], card) for i in range(0, len(images), args.batch)]
            prep_s = time.perf_counter() - pre
            del images
            for _ in range(3):  # warm-up
                backend.predict(batches[0])
            model_rates, e2e_rates, summaries = [], [], []
            for _ in range(args.rounds):
                model_rates.append(model_only(backend, batches))
                rate, summary = end_to_end(backend, paths, args.batch, args.workers)
                e2e_rates.append(rate)
                summaries.append(summary)
            del batches
            model_ips, e2e_ips = statistics.median(model_rates), statistics.median(e2e_rates)
            stages = summaries[-1]["stages_ms"]
            name = "ort_default_spinning" if spin is None else "ort_no_spinning"
            variants[name] = {
                "model_only_img_s": model_ips, "end_to_end_img_s": e2e_ips, "ratio": e2e_ips / model_ips,
                "model_only_rounds": model_rates, "end_to_end_rounds": e2e_rates,
                "serial_decode_preprocess_ms_per_img": 1000 * prep_s / len(paths),
                "last_round_stage_p50_ms": {k: v.get("p50_ms") for k, v in stages.items()},
            }
            print(f"{name}: model-only {model_ips:.1f} img/s, end-to-end {e2e_ips:.1f} img/s, "
                  f"ratio {e2e_ips / model_ips:.3f}", flush=True)
            backend.close()
    result = {
        "what": "end-to-end folder throughput (decode + preprocess + ONNX Runtime via the predict loop) / "
                "model-only ONNX Runtime throughput on the same pre-decoded, pre-processed batches",
        "model": f"MobileNetV2 width 1.0, random init, ONNX opset 17, input {args.size}x{args.size}",
        "images": len(paths), "image_source": str(root), "batch": args.batch, "ort_threads": args.threads,
        "decode_workers": args.workers, "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "onnxruntime": __import__("onnxruntime").__version__, "variants": variants,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
