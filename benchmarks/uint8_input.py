"""What `tledge export --input uint8` saves per image in tledge's own runtime on this CPU.

MobileNetV2 (random weights: the arithmetic, not the accuracy, is timed) at 224 px, exported to model.onnx and
model.uint8.onnx (/255 and per-channel normalization inside the graph). Per image, timed in interleaved rounds
(tledge.timing, so a noisy minute hits both alike), from a decoded 640×480 RGB frame:
  preprocess  tledge.preprocess.preprocess_rgb (resize + normalize for model.onnx; resize only for uint8)
  infer       backend.predict at batch 1 (the uint8 graph does the normalization: Cast, Transpose, Mul, Add)
  total       both, as `tledge predict` runs them.
Writes benchmarks/results/uint8_input.json. Run: PYTHONPATH=. python benchmarks/uint8_input.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "uint8_input.json"))
    args = parser.parse_args()

    import torch

    from tledge.card import ModelCard
    from tledge.exporting.onnx_export import export_onnx
    from tledge.exporting.preprocess_graph import add_preprocessing
    from tledge.preprocess import preprocess_rgb
    from tledge.runtime.backends import load_backend
    from tledge.timing import medians, time_calls
    from tledge.models.backbones import create_model

    torch.manual_seed(0)
    card = ModelCard("mobilenet_v2", ["a", "b", "c", "d", "e", "f"], input_size=(224, 224))
    model = create_model("mobilenet_v2", 6).eval()
    frame = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        plain = export_onnx(model, card, Path(tmp) / "model.onnx")
        uint8 = add_preprocessing(plain, Path(tmp) / "model.uint8.onnx", "uint8")
        backends = {name: load_backend(path, device="cpu", threads=args.threads) for name, path in
                    (("float", plain), ("uint8", uint8))}
        tensors = {name: preprocess_rgb(frame, b.card)[None] for name, b in backends.items()}
        calls = {}
        for name, backend in backends.items():
            calls[f"{name}.preprocess"] = lambda b=backend: preprocess_rgb(frame, b.card)
            calls[f"{name}.infer"] = lambda b=backend, x=tensors[name]: b.predict(x)
            calls[f"{name}.total"] = lambda b=backend: b.predict(preprocess_rgb(frame, b.card)[None])
        ms = medians(time_calls(calls, rounds=args.rounds, runs=5, warmup=5))
        same = np.allclose(backends["float"].predict(tensors["float"]), backends["uint8"].predict(tensors["uint8"]),
                           atol=1e-4)
    result = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads,
              "frame": "640x480 RGB uint8", "input": "224x224", "median_ms": {k: round(v, 3) for k, v in ms.items()},
              "saved_ms_per_image": {part: round(ms[f"float.{part}"] - ms[f"uint8.{part}"], 3)
                                     for part in ("preprocess", "infer", "total")},
              "same_logits_atol_1e-4": bool(same)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
