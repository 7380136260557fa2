"""Does watching slow the model? Inference FPS of the predict loop with 0 vs 4 browser-like viewers, in one run.

    .venv/bin/python benchmarks/serve_bench.py [--data ../shared/data/intel-scenes/train] [--frames 400]
        [--width 640 --height 480] [--threads 2] [--rounds 5]

The source is a camera-sized stream (real scene photos scaled to 640x480) handed to the loop as fast as it
takes frames, so the loop's own rate is what is measured (a paced clip would pin both at the clip's rate).
Three conditions, interleaved round by round so drift on a shared host hits all of them:
- `no_serve`: the plain predict loop;
- `serve_0_viewers`: the loop with the live view on (server up, frames published), nobody watching;
- `serve_4_viewers`: four MJPEG clients on 127.0.0.1 read /stream.mjpg as fast as they can.
Reports the median FPS per condition, every round, the ratios, how many frames were encoded and received, and
the CPU time this process spent per frame (loop + ONNX Runtime + server threads; the viewers run in a child
process). Then, with no model at all, the share of one core that serving takes (frames published at 60 fps
for 5 s, 0 and 4 viewers): on a shared, loaded host FPS is noisy, and that share is what serving costs.
MobileNetV2 (width 1.0, random init: speed only), ONNX opset 17, ONNX Runtime on the CPU.
Writes benchmarks/results/serve_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from pipeline_bench import export_model, pick_images  # noqa: E402
from tledge.preprocess import load_image  # noqa: E402
from tledge.runtime.backends.onnxrt import OnnxRuntimeBackend  # noqa: E402
from tledge.runtime.predict import PredictOptions, predict_stream  # noqa: E402
from tledge.runtime.serve import BOUNDARY, ServeOptions, ServeSink  # noqa: E402
from tledge.runtime.sources import Item  # noqa: E402

CONDITIONS = ("no_serve", "serve_0_viewers", "serve_4_viewers")


def camera_frames(paths: list[Path], width: int, height: int) -> list:
    return [cv2.resize(load_image(p), (width, height), interpolation=cv2.INTER_LINEAR) for p in paths]


def stream(frames: list, count: int):
    """Items as a fast camera would hand them over: a new array object each time, stamped when handed out."""
    for i in range(count):
        yield Item(f"cam#{i}", frames[i % len(frames)].copy(), time.perf_counter(), index=i)


def read_stream(port: int, counts: list, slot: int) -> None:
    """An MJPEG client that reads and discards frames as fast as it can, until the server closes."""
    marker = f"--{BOUNDARY}".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return
                counts[slot] += chunk.count(marker)
    except OSError:
        return


def viewers_process(port: int, count: int) -> None:
    """Child process: `count` viewers; prints their frame counts (approximate: a marker split across reads is
    missed) as JSON when the server closes. A separate process, so its CPU time is not the server's."""
    counts = [0] * count
    threads = [threading.Thread(target=read_stream, args=(port, counts, i), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    print(json.dumps(counts), flush=True)


def run_condition(backend, frames: list, count: int, condition: str) -> dict:
    sinks, viewers = [], None
    if condition != "no_serve":
        sink = ServeSink(ServeOptions(host="127.0.0.1", port=0), {"backend": backend.name})
        sinks.append(sink)
        if condition == "serve_4_viewers":
            viewers = subprocess.Popen([sys.executable, __file__, "--viewers-for", str(sink.server.port)],
                                       stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 30
            while len(sink.view.stats()["viewers"]) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
    cpu = time.process_time()
    summary = predict_stream(backend, stream(frames, count), PredictOptions(topk=5, batch=1, warmup=0), sinks)
    cpu = time.process_time() - cpu  # this process: the loop, ONNX Runtime's threads, the server's threads
    row = {"fps": summary["items"] / summary["wall_s"], "items": summary["items"],
           "inference_p50_ms": summary["stages_ms"]["inference"]["p50_ms"],
           "cpu_ms_per_frame": 1000.0 * cpu / summary["items"]}
    if sinks:
        row["encoded"] = sinks[0].view.encoded
    if viewers is not None:
        out, _ = viewers.communicate(timeout=60)
        row["frames_received_per_viewer"] = json.loads(out)
    return row


def serving_cost(frames: list, viewers: int, seconds: float, fps: float) -> dict:
    """CPU share of one core that serving takes, with no model: frames published at `fps` for `seconds`."""
    sink = ServeSink(ServeOptions(host="127.0.0.1", port=0), {})
    child = None
    if viewers:
        child = subprocess.Popen([sys.executable, __file__, "--viewers-for", str(sink.server.port)],
                                 stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while len(sink.view.stats()["viewers"]) < viewers and time.monotonic() < deadline:
            time.sleep(0.01)
    record = {"label": "sea", "prob": 0.9, "topk": [], "latency_ms": 10.0}
    status = {"fps": fps, "latency_ms": 10.0}
    count = int(seconds * fps)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        sink.view.publish(frames[i % len(frames)], record, status)
        time.sleep(max(0.0, wall + (i + 1) / fps - time.perf_counter()))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    encoded = sink.view.encoded
    sink.close()
    received = json.loads(child.communicate(timeout=60)[0]) if child else []
    return {"viewers": viewers, "published": count, "encoded": encoded, "frames_received_per_viewer": received,
            "cpu_share_of_one_core": cpu / wall, "cpu_ms_per_encoded_frame": 1000 * cpu / encoded if encoded else None}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--viewers-for":
        return viewers_process(int(sys.argv[2]), 4)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/intel-scenes/train"))
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/serve_bench.json"))
    args = parser.parse_args()

    root = Path(args.data)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    frames = camera_frames(pick_images(root, args.photos), args.width, args.height)
    rounds: dict[str, list[dict]] = {name: [] for name in CONDITIONS}
    with tempfile.TemporaryDirectory() as tmp:
        backend = OnnxRuntimeBackend(export_model(classes, args.size, Path(tmp)), "cpu", threads=args.threads,
                                     spin=False)
        run_condition(backend, frames, 50, "serve_4_viewers")  # warm-up: ORT, the server, cv2's encoder
        for r in range(args.rounds):
            order = CONDITIONS if r % 2 == 0 else CONDITIONS[::-1]
            for condition in order:
                row = run_condition(backend, frames, args.frames, condition)
                rounds[condition].append(row)
                print(f"round {r + 1} {condition}: {row['fps']:.1f} fps", flush=True)
        backend.close()
    costs = [serving_cost(frames, viewers, 5.0, 60.0) for viewers in (0, 4, 0, 4)]
    for cost in costs:
        print(f"serving only, {cost['viewers']} viewers: {100 * cost['cpu_share_of_one_core']:.1f}% of one core",
              flush=True)
    medians = {name: statistics.median(row["fps"] for row in rows) for name, rows in rounds.items()}
    paired = [four["fps"] / zero["fps"] for four, zero in zip(rounds["serve_4_viewers"], rounds["serve_0_viewers"])]
    cpu = {name: statistics.median(row["cpu_ms_per_frame"] for row in rows) for name, rows in rounds.items()}
    result = {
        "what": "predict-loop inference FPS with the live view off, on with no viewer, and on with 4 MJPEG viewers",
        "model": f"MobileNetV2 width 1.0, random init, ONNX opset 17, input {args.size}x{args.size}, batch 1",
        "frames_per_round": args.frames, "camera_frame": [args.width, args.height], "photos": args.photos,
        "image_source": str(root), "rounds": args.rounds, "ort_threads": args.threads, "cpu_count": os.cpu_count(),
        "max_stream_fps": ServeOptions().max_fps, "load_average": os.getloadavg(),
        "median_fps": medians,
        "median_cpu_ms_per_frame": cpu,
        "ratio_4_viewers_vs_0": medians["serve_4_viewers"] / medians["serve_0_viewers"],
        "paired_ratio_4_viewers_vs_0_per_round": paired,
        "median_paired_ratio_4_viewers_vs_0": statistics.median(paired),
        "ratio_0_viewers_vs_no_serve": medians["serve_0_viewers"] / medians["no_serve"],
        "rounds_detail": rounds,
        "serving_only_60fps_5s": costs,
        "onnxruntime": __import__("onnxruntime").__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("median fps: " + ", ".join(f"{k} {v:.1f}" for k, v in medians.items()))
    print("median CPU ms per frame: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    print(f"4 viewers / 0 viewers = {result['ratio_4_viewers_vs_0']:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
