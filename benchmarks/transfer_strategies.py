"""MobileNetV2 transfer-learning strategies side by side, in one run on the same split: feature extractor
(freeze all, with and without the feature cache), partial fine-tune (freeze stages:10), full fine-tune.

    python benchmarks/transfer_strategies.py --data ../shared/data/intel-scenes \
        --imagenet-weights ../shared/weights/mobilenet_v2-b0353104.pth --images 1000 --img-size 150 --epochs 2

Reports seconds per epoch, total time, test accuracy and macro F1 per strategy, and the feature-cache
speed-up. The images are a seeded, class-balanced subset, linked (not copied) into a temp folder.
Writes benchmarks/results/transfer_strategies.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def link_subset(source: Path, target: Path, images: int, seed: int) -> Path:
    """A class-balanced subset of an ImageFolder as symlinks (split folders: the `train` one)."""
    root = source / "train" if (source / "train").is_dir() else source
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    per_class = images // len(classes)
    rng = random.Random(seed)
    for folder in classes:
        files = sorted(folder.glob("*.jpg"))
        rng.shuffle(files)
        (target / folder.name).mkdir(parents=True)
        for f in files[:per_class]:
            (target / folder.name / f.name).symlink_to(f.resolve())
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--imagenet-weights", type=Path, default=None, help="torchvision weight file (offline)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--img-size", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "transfer_strategies.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tledge-train-speed-"))
    if args.imagenet_weights:
        os.environ["TORCH_HOME"] = str(work / "torch")
        from tledge.models.weights import add_weights

        add_weights(args.imagenet_weights)
    import torch

    from tledge.training.config import TrainConfig
    from tledge.logs import captured
    from tledge.training.fit import train_run

    data = link_subset(args.data, work / "data", args.images, seed=0)
    common = dict(data=str(data), model="mobilenet_v2", weights="imagenet", img_size=args.img_size,
                  epochs=args.epochs, batch_size=args.batch_size, augment="none", scheduler="none",
                  project=str(work / "runs"), seed=0)
    setups = {
        "full fine-tune (freeze none)": dict(freeze="none", lr=1e-4),
        "feature extractor, no cache (freeze all --no-cache)": dict(freeze="all", lr=1e-3, cache_features=False),
        "feature extractor, cached features (freeze all)": dict(freeze="all", lr=1e-3, cache_features=True),
        "partial fine-tune (freeze stages:10)": dict(freeze="stages:10", lr=3e-4),
    }
    rows = []
    for label, extra in setups.items():
        started = time.perf_counter()
        with captured() as lines:
            result = train_run(TrainConfig(**common, **extra))
        wall = time.perf_counter() - started
        epoch_times = [r["epoch_time_s"] for r in result.history]
        cache_line = next((line for line in lines if "features cached" in line), "")
        rows.append({
            "setup": label,
            "epoch_s": epoch_times,
            "mean_epoch_s": sum(epoch_times) / len(epoch_times),
            "cache_s": float(cache_line.split(" in ")[1].split(" s")[0]) if cache_line else 0.0,
            "wall_s": wall,
            "val_acc": result.best_val_acc,
            "test_acc": (result.test_metrics or {}).get("accuracy"),
            "test_macro_f1": (result.test_metrics or {}).get("macro", {}).get("f1"),
            "train_time_s": result.train_time_s,
            "test_images": (result.test_metrics or {}).get("num_samples"),
            "trainable_params": (result.test_metrics or {}).get("trainable_params"),
        })
        print(f"{label}: {rows[-1]['mean_epoch_s']:.1f} s/epoch, test acc {rows[-1]['test_acc']:.3f}", flush=True)
    no_cache, cached = rows[1]["mean_epoch_s"], rows[2]["mean_epoch_s"]
    result = {
        "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "images": args.images, "img_size": args.img_size, "epochs": args.epochs,
        "rows": rows,
        "cached_vs_uncached_epoch_speedup": no_cache / cached if cached > 0 else None,
        "full_vs_cached_epoch_speedup": rows[0]["mean_epoch_s"] / cached if cached > 0 else None,
        # what a user waits for: the cache is built once, then every epoch is head-only
        "speedup_over_15_epochs_cached_vs_uncached": (15 * no_cache) / (rows[2]["cache_s"] + 15 * cached),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
