"""Caching a frozen prefix: PyTorch eager vs ONNX Runtime, same photos, same loader, interleaved rounds.

    python benchmarks/prefix_cache.py --data ../shared/data/intel-scenes --images 512 --rounds 3

For each prefix (the whole trunk: freeze all; the first K stages: freeze stages:K) it times both engines
over the same decoded batches, alternating engine order per round, and reports per-photo medians with
min/max, the ONNX Runtime / PyTorch speed ratio, and the largest relative output difference. Real MobileNetV2
ImageNet weights (from torch's cache, `tledge weights add FILE` first). Decoding is timed apart (done once,
outside the rounds), so the figures are the prefix engine alone.
Writes benchmarks/results/prefix_cache.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's tledge, not an installed one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stages", type=int, nargs="*", default=[14], help="stages:K prefixes to time too")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "prefix_cache.json")
    args = parser.parse_args()

    import torch

    from tledge.card import ModelCard
    from tledge.models.backbones import create_model
    from tledge.training.dataset import ImageDataset, make_loader
    from tledge.models.device import resolve_device
    from tledge.training.prefix import FrozenPrefix, _torch_engine, onnxruntime_engine, relative_difference

    root = args.data / "train" if (args.data / "train").is_dir() else args.data
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    every = sorted(root.glob("*/*.jpg"))
    files = every[:: max(1, len(every) // args.images)][: args.images]  # spread over all classes
    labels = [classes.index(f.parent.name) for f in files]
    card = ModelCard(arch="mobilenet_v2", class_names=classes, input_size=(args.img_size, args.img_size))
    started = time.perf_counter()
    batches = [x for x, _ in make_loader(ImageDataset(files, labels, card, "none", 0), args.batch_size, False, 0, 0)]
    decode_s = time.perf_counter() - started

    model = create_model("mobilenet_v2", len(classes), weights="imagenet").eval()
    setup = resolve_device("cpu")
    rows = []
    for stages in [None, *args.stages]:
        prefix = FrozenPrefix(model, stages)
        engines = {"pytorch": _torch_engine(prefix, setup), "onnxruntime": onnxruntime_engine(prefix, batches[0])}
        diff = max(relative_difference(engines["pytorch"].run(b), engines["onnxruntime"].run(b)) for b in batches[:2])
        times = {name: [] for name in engines}
        for round_index in range(args.rounds):
            order = list(engines) if round_index % 2 == 0 else list(reversed(engines))
            for name in order:
                tic = time.perf_counter()
                for batch in batches:
                    engines[name].run(batch)
                times[name].append(1000 * (time.perf_counter() - tic) / len(files))
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append({
            "prefix": "freeze all (whole trunk)" if stages is None else f"freeze stages:{stages}",
            "pytorch_ms_per_photo": {"median": med["pytorch"], "min": min(times["pytorch"]), "max": max(times["pytorch"])},
            "onnxruntime_ms_per_photo": {"median": med["onnxruntime"], "min": min(times["onnxruntime"]),
                                         "max": max(times["onnxruntime"])},
            "speedup_onnxruntime_over_pytorch": med["pytorch"] / med["onnxruntime"],
            "max_rel_output_diff": diff,
            "projected_s_for_8741_photos_onnxruntime": med["onnxruntime"] * 8741 / 1000,
        })
        print(f"{rows[-1]['prefix']}: pytorch {med['pytorch']:.2f} ms/photo, onnxruntime {med['onnxruntime']:.2f} "
              f"ms/photo ({rows[-1]['speedup_onnxruntime_over_pytorch']:.2f}x), max rel diff {diff:.1e}")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "photos": len(files), "img_size": args.img_size, "batch_size": args.batch_size, "rounds": args.rounds,
        "decode_preprocess_ms_per_photo": 1000 * decode_s / len(files),
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
