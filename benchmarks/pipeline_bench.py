"""`tledge predict` throughput vs model-only throughput, per case, in one run with interleaved rounds.

    .venv/bin/python benchmarks/pipeline_bench.py [--data ../shared/data/intel-scenes/train] [--images 400]
        [--size 224] [--batch 1,16] [--precision fp32,int8] [--source folder,video] [--threads 2] [--rounds 5]

Cases: source (a folder of photos; an mp4 video made from the same photos with OpenCV) × batch × precision
(FP32 ONNX; tledge's own CPU INT8 ONNX, calibrated on 32 of the photos).
- model only: the same ONNX Runtime settings `tledge predict` uses (CPU, `--threads`, no spinning) on
  batches decoded and preprocessed beforehand, from the same photos or video frames (the ceiling);
- end to end: the predict loop as `tledge predict MODEL SOURCE --batch B` runs it (the runner's
  `open_predict_source`: decode ahead, shared preprocessing; then batching, softmax, top-k, the folder's
  results table and progress sinks) on the same photos or video, with the same warm backend; its throughput
  is items / the loop's wall time.
Ratio = end-to-end ÷ model-only (img/s). The process CPU time per image of each side is recorded too (the
end-to-end one includes loading the model): on a shared, busy machine wall-clock rates swing, CPU time much less. Every round runs every case, model-only then end-to-end, so drift hits all
of them; medians and the min-max spread of the rounds are reported. MobileNetV2 (width 1.0, random init:
speed only) exported to ONNX opset 17. Writes benchmarks/results/pipeline_bench.json; about 3 minutes on
2 cores with the defaults.
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

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tledge.card import ModelCard, embed_in_onnx  # noqa: E402
from tledge.preprocess import is_image_file, load_image, preprocess_rgb, to_rgb8  # noqa: E402
from tledge.runtime.backends import load_backend  # noqa: E402
from tledge.runtime.options import PredictRequest  # noqa: E402
from tledge.runtime.outputs import ProgressSink, TableSink  # noqa: E402
from tledge.runtime.predict import PredictOptions, predict_stream  # noqa: E402
from tledge.runtime.runner import backend_options, open_predict_source  # noqa: E402
from tledge.runtime.sources import base as sources_base  # noqa: E402

GOALS = {1: 0.8, 16: 0.9}  # issue #15: end-to-end ≥ 0.9× model-only at batch 16, ≥ 0.8× at batch 1


def pick_images(root: Path, count: int) -> list[Path]:
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def export_fp32(classes: list[str], size: int, folder: Path) -> Path:
    import onnx
    import torch

    from tledge.models.backbones import create_model

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


def export_int8(fp32: Path, calibration: list[Path]) -> Path:
    from tledge.exporting.int8 import quantize_int8

    return quantize_int8(fp32, fp32.with_name("model.int8.onnx"), calibration)


def write_video(paths: list[Path], size: int, fourcc: str, folder: Path) -> Path:
    """The photos as frames of one video (resized to size × size), read back to check every frame is there."""
    path = folder / ("photos.avi" if fourcc == "MJPG" else "photos.mp4")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (size, size))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {fourcc} video here")
    for p in paths:
        writer.write(cv2.resize(cv2.imread(str(p)), (size, size), interpolation=cv2.INTER_LINEAR))
    writer.release()
    frames = video_frames(path)
    if len(frames) != len(paths):
        raise SystemExit(f"{path.name}: wrote {len(paths)} frames, read back {len(frames)}")
    return path


def video_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(to_rgb8(frame))
    capture.release()
    return frames


def prepared_batches(images: list[np.ndarray], card: ModelCard, batch: int) -> list[np.ndarray]:
    tensors = [preprocess_rgb(image, card) for image in images]
    return [np.stack(tensors[i:i + batch]) for i in range(0, len(tensors), batch)]


def model_only(backend, batches: list[np.ndarray]) -> tuple[float, float]:
    """(images/s, process CPU ms per image)."""
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    for x in batches:
        backend.predict(x)
        count += x.shape[0]
    return count / (time.perf_counter() - start), (time.process_time() - cpu) * 1000.0 / count


def end_to_end(backend, model: Path, source: str, batch: int, workers: int) -> tuple[float, float, dict]:
    """(images/s, process CPU ms per image, summary) of the predict loop as `tledge predict` runs it: the source
    opened by the runner's own function, the folder's results table and progress sinks, on the warm backend."""
    request = PredictRequest(str(model), source, batch=batch, device="cpu", workers=workers)
    cpu = time.process_time()
    with open_predict_source(request, backend.card) as opened:
        sinks = [TableSink(), ProgressSink(len(opened))] if opened.kind == "images" else []
        summary = predict_stream(backend, opened, PredictOptions(request.topk, batch, warmup=0), sinks)
    cpu_ms = (time.process_time() - cpu) * 1000.0 / max(1, summary["items"])
    return summary["items"] / summary["wall_s"], cpu_ms, summary


def spread(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/intel-scenes/train"))
    parser.add_argument("--images", type=int, default=400, help="photos per case (and frames in the video)")
    parser.add_argument("--size", type=int, default=224, help="model input size")
    parser.add_argument("--video-size", type=int, default=224, help="video frame size (square)")
    parser.add_argument("--fourcc", default="mp4v", choices=("mp4v", "MJPG"))
    parser.add_argument("--batch", default="1,16")
    parser.add_argument("--precision", default="fp32,int8")
    parser.add_argument("--source", default="folder,video")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--workers", type=int, default=2, help="decode threads for image files")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decode-niceness", type=int, default=None,
                        help="how much lower decode threads run than inference (default: tledge's, 0 = same)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/pipeline_bench.json"))
    args = parser.parse_args()
    if args.decode_niceness is not None:
        sources_base.DECODE_NICENESS = args.decode_niceness
    batches = [int(b) for b in args.batch.split(",")]
    precisions = args.precision.split(",")
    source_kinds = args.source.split(",")

    root = Path(args.data)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths = pick_images(root, args.images)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tledge-pipeline-") as tmp:
        tmp = Path(tmp)
        folder = tmp / "photos"
        folder.mkdir()
        for i, p in enumerate(paths):  # a flat folder of exactly these photos (what `tledge predict FOLDER` reads)
            os.symlink(p.resolve(), folder / f"{i:05d}{p.suffix.lower()}")
        models = {"fp32": export_fp32(classes, args.size, tmp)}
        if "int8" in precisions:
            models["int8"] = export_int8(models["fp32"], paths[:: max(1, len(paths) // 32)][:32])
        specs = {"folder": str(folder)}
        decoded = {"folder": [load_image(p) for p in sorted(folder.iterdir())]}
        if "video" in source_kinds:
            video = write_video(sorted(folder.iterdir()), args.video_size, args.fourcc, tmp)
            specs["video"] = str(video)
            decoded["video"] = video_frames(video)
        setup_s = time.perf_counter() - began

        backends, inputs, cases = {}, {}, []
        for precision in precisions:
            backends[precision] = load_backend(models[precision], "cpu",
                                               **backend_options(models[precision], None, args.threads))
            card = backends[precision].card
            for kind in source_kinds:
                for batch in batches:
                    key = (precision, kind, batch)
                    inputs[key] = prepared_batches(decoded[kind], card, batch)
                    cases.append(key)
            for _ in range(3):  # warm-up
                backends[precision].predict(inputs[cases[-1]][0])
        rates = {key: {"model": [], "e2e": [], "model_cpu": [], "e2e_cpu": []} for key in cases}
        last = {}
        for round_index in range(args.rounds):
            for key in cases:
                precision, kind, batch = key
                rate, cpu_ms = model_only(backends[precision], inputs[key])
                rates[key]["model"].append(rate)
                rates[key]["model_cpu"].append(cpu_ms)
                rate, cpu_ms, summary = end_to_end(backends[precision], models[precision], specs[kind], batch,
                                                   args.workers)
                rates[key]["e2e_cpu"].append(cpu_ms)
                if summary["items"] != len(paths):
                    raise SystemExit(f"{kind}: predicted {summary['items']} of {len(paths)} items")
                rates[key]["e2e"].append(rate)
                last[key] = summary
            print(f"round {round_index + 1}/{args.rounds} done", flush=True)
        for backend in backends.values():
            backend.close()

    results = []
    print(f"{'source':8} {'batch':>5} {'precision':9} {'model-only':>11} {'end-to-end':>11} {'ratio':>6} "
          f"{'ratio spread':>13} {'goal':>5} {'CPU ms/img model, e2e':>22}")
    for key in cases:
        precision, kind, batch = key
        model_rates, e2e_rates = rates[key]["model"], rates[key]["e2e"]
        ratios = [e / m for e, m in zip(e2e_rates, model_rates)]
        model_ips, e2e_ips = statistics.median(model_rates), statistics.median(e2e_rates)
        goal = GOALS.get(batch)
        stages = last[key]["stages_ms"]
        row = {
            "source": kind, "batch": batch, "precision": precision,
            "model_only_img_s": model_ips, "end_to_end_img_s": e2e_ips,
            "ratio_of_medians": e2e_ips / model_ips, "median_ratio": statistics.median(ratios),
            "ratio_spread": spread(ratios), "model_only_rounds": model_rates, "end_to_end_rounds": e2e_rates,
            "goal": goal, "meets_goal": None if goal is None else statistics.median(ratios) >= goal,
            "cpu_ms_per_img": {"model_only": statistics.median(rates[key]["model_cpu"]),
                               "end_to_end": statistics.median(rates[key]["e2e_cpu"])},
            "last_round_stage_p50_ms": {k: v.get("p50_ms") for k, v in stages.items() if v.get("count")},
        }
        results.append(row)
        low, high = row["ratio_spread"]
        print(f"{kind:8} {batch:>5} {precision:9} {model_ips:>11.1f} {e2e_ips:>11.1f} {row['median_ratio']:>6.3f} "
              f"{low:>6.3f}-{high:<6.3f} {goal if goal is not None else '':>5} "
              f"{row['cpu_ms_per_img']['model_only']:>10.2f}, {row['cpu_ms_per_img']['end_to_end']:.2f}")
    result = {
        "what": "`tledge predict` throughput (the runner's source: decode + preprocess ahead; ONNX Runtime, top-k, "
                "results table) / model-only ONNX Runtime throughput on the same pre-decoded, pre-processed batches; "
                "median_ratio is the median of the per-round ratios",
        "command": "python benchmarks/pipeline_bench.py " + " ".join(sys.argv[1:]),
        "model": f"MobileNetV2 width 1.0, random init, ONNX opset 17, input {args.size}x{args.size}; int8: "
                 "tledge quantize_int8 (u8s8, minmax, 32 calibration photos)",
        "images": len(paths), "image_source": str(root), "video": f"{args.fourcc}, {args.video_size}x"
                                                                f"{args.video_size}, {len(paths)} frames",
        "ort_threads": args.threads, "decode_workers": args.workers, "rounds": args.rounds,
        "decode_niceness": sources_base.DECODE_NICENESS,
        "cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
        "onnxruntime": __import__("onnxruntime").__version__, "opencv": cv2.__version__,
        "setup_s": setup_s, "total_s": time.perf_counter() - began, "cases": results,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} ({result['total_s']:.0f} s, load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
