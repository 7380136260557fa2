"""ONNX Runtime vs OpenVINO on the CPU, same MobileNetV2 files and the same input tensor (issue #23).

torchvision's MobileNetV2 with its ImageNet weights (/work/shared/weights, see its README), 224 px, exported by
tledge's own code: export_onnx → model.onnx, quantize_int8 (the CPU u8s8 Q/DQ flavour, minmax, calibrated on
real photos) → model.int8.onnx, export_openvino → the two IRs. Then batch 1, the same threads for every
runtime, timed in interleaved rounds (tledge.timing: each round runs every model in turn, so a noisy minute on
this shared host hits them all):
  ort-fp32, ort-int8             ONNX Runtime CPU provider (tledge's OnnxRuntimeBackend)
  openvino-fp32, openvino-int8   OpenVINO CPU plugin on the IRs (tledge's OpenVINOBackend, f32 float kernels)
  openvino-fp32-bf16             the FP32 IR with OpenVINO's own float precision (bf16 where the CPU has it)
Per model: median ms over every call, the 25-75 % range, and the lowest and highest per-round median (the
spread). The CPU's integer-kernel family (VNNI or not) and the load average are recorded: which runtime wins
depends on both. Writes benchmarks/results/openvino_vs_ort.json; about 2 minutes.

    PYTHONPATH=. python benchmarks/openvino_vs_ort.py [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

WEIGHTS = Path("/work/shared/weights/mobilenet_v2-b0353104.pth")
PHOTOS = Path("/work/shared/data/intel-scenes/train")


def cpu_flags() -> dict:
    text = Path("/proc/cpuinfo").read_text(errors="replace")
    found = subprocess.run(["grep", "-o", "-m1", "-w", r"avx512_vnni\|avx_vnni", "/proc/cpuinfo"],
                           capture_output=True, text=True).stdout.split()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", text, re.M) or [None, ""])[1].split())
    return {"model": model.group(1) if model else platform.processor(), "vnni": found[0] if found else "none",
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags, "amx_int8": "amx_int8" in flags,
            "cores_usable": len(os.sched_getaffinity(0))}


def spread(values: list[float], rounds: int) -> dict:
    per_round = [float(np.median(chunk)) for chunk in np.array_split(np.asarray(values), rounds)]
    return {"median_ms": round(float(np.median(values)), 3),
            "p25_ms": round(float(np.percentile(values, 25)), 3), "p75_ms": round(float(np.percentile(values, 75)), 3),
            "round_median_min_ms": round(min(per_round), 3), "round_median_max_ms": round(max(per_round), 3),
            "calls": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=10, help="calls per model per round")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "openvino_vs_ort.json"))
    args = parser.parse_args()

    import openvino
    import onnxruntime
    import torch
    import torchvision

    from tledge.card import ModelCard
    from tledge.exporting.int8 import quantize_int8
    from tledge.exporting.onnx_export import export_onnx
    from tledge.exporting.openvino_ir import export_openvino
    from tledge.image_files import find_images
    from tledge.preprocess import load_batch
    from tledge.runtime.backends import load_backend
    from tledge.timing import time_calls

    load_before = os.getloadavg()
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    model.eval()
    card = ModelCard("mobilenet_v2", [f"imagenet_{i}" for i in range(1000)], input_size=(224, 224),
                     resize="center_crop", weights_origin="torchvision IMAGENET1K_V1")
    photos = find_images(PHOTOS)
    rng = np.random.default_rng(0)
    calib = [photos[i] for i in sorted(rng.choice(len(photos), args.calib_images, replace=False))]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        fp32 = export_onnx(model, card, Path(tmp) / "model.onnx")
        int8 = quantize_int8(fp32, Path(tmp) / "model.int8.onnx", calib, flavour="u8s8", method="minmax",
                             calibration_source=str(PHOTOS))
        ir32 = export_openvino(fp32, Path(tmp) / "model.openvino.xml")
        ir8 = export_openvino(int8, Path(tmp) / "model.int8.openvino.xml")
        build_s = time.perf_counter() - started
        opened = {"ort-fp32": load_backend(fp32, "cpu", threads=args.threads),
                  "ort-int8": load_backend(int8, "cpu", threads=args.threads),
                  "openvino-fp32": load_backend(ir32, "cpu", threads=args.threads),
                  "openvino-int8": load_backend(ir8, "cpu", threads=args.threads),
                  "openvino-fp32-bf16": load_backend(ir32, "cpu", threads=args.threads, fp16=True)}
        x, kept = load_batch(calib[:1], card)  # one real photo, the same tensor for every model
        assert kept == [0]
        answers = {name: b.predict(x) for name, b in opened.items()}
        calls = {name: (lambda b=b: b.predict(x)) for name, b in opened.items()}
        samples = time_calls(calls, rounds=args.rounds, runs=args.runs, warmup=20)
        backends = {name: b.name for name, b in opened.items()}
        for backend in opened.values():
            backend.close()
    ref = answers["ort-fp32"]
    result = {
        "what": "MobileNetV2 ImageNet (torchvision weights), 224 px, batch 1, one real photo, interleaved rounds",
        "cpu": cpu_flags(), "threads": args.threads, "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "versions": {"onnxruntime": onnxruntime.__version__, "openvino": openvino.get_version(),
                     "torch": torch.__version__},
        "rounds": args.rounds, "runs_per_round": args.runs, "build_seconds": round(build_s, 1),
        "int8": {"flavour": "u8s8 (CPU Q/DQ)", "method": "minmax", "calibration_images": args.calib_images},
        "backends": backends,
        "latency": {name: spread(values, args.rounds) for name, values in samples.items()},
        "vs_ort_fp32": {name: {"top1_same": bool(a.argmax() == ref.argmax()),
                               "max_rel_dlogit": float(f"{np.abs(a - ref).max() / np.abs(ref).max():.2e}")}
                        for name, a in answers.items() if name != "ort-fp32"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
