"""`--fast-decode` on large JPEGs: decode + preprocess CPU time, and how far the result is from a full decode.

    .venv/bin/python benchmarks/fast_decode.py [--data ../shared/data/intel-scenes/train] [--count 60] [--size 224]

The scene photos are 150 px, too small for DCT scaling to apply, so the large JPEGs are mosaics of 8×6 of
them (1200×900, quality 90): more fine detail than a camera photo, a worst case for the difference. For each
resize policy: process CPU ms per image of load_image + preprocess_rgb with and without `decode_min_size`
(best of 3 passes), and |full − reduced| of the resized uint8 images (mean, p99, max) and of the tensors.
Writes benchmarks/results/fast_decode.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tledge.card import ModelCard  # noqa: E402
from tledge.preprocess import decode_min_size, is_image_file, load_image, preprocess_rgb, resize_rgb  # noqa: E402


def write_mosaics(photos: list[Path], count: int, folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        tiles = [cv2.resize(cv2.imread(str(photos[i])), (150, 150)) for i in rng.choice(len(photos), 48, replace=False)]
        mosaic = np.vstack([np.hstack(tiles[r * 8:(r + 1) * 8]) for r in range(6)])
        path = folder / f"mosaic{k:03d}.jpg"
        cv2.imwrite(str(path), mosaic, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def cpu_ms_per_image(paths: list[Path], card: ModelCard, min_size) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for path in paths:
            preprocess_rgb(load_image(path, min_size), card)
        best = min(best, time.process_time() - start)
    return 1000.0 * best / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/intel-scenes/train"))
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/fast_decode.json"))
    args = parser.parse_args()
    photos = sorted(p for p in Path(args.data).rglob("*") if is_image_file(p))
    rows = []
    with tempfile.TemporaryDirectory(prefix="tledge-fast-decode-") as tmp:
        paths = write_mosaics(photos, args.count, Path(tmp))
        for policy in ("stretch", "center_crop"):
            card = ModelCard("mobilenet_v2", ["a", "b"], input_size=(args.size, args.size), resize=policy)
            min_size = decode_min_size(card)
            diffs, tensor_diffs = [], []
            for path in paths:
                full, reduced = load_image(path), load_image(path, min_size)
                a = resize_rgb(full, card.input_size, policy).astype(np.int16)
                diffs.append(np.abs(a - resize_rgb(reduced, card.input_size, policy)).ravel())
                tensor_diffs.append(np.abs(preprocess_rgb(full, card) - preprocess_rgb(reduced, card)).max())
            diff = np.concatenate(diffs)
            row = {
                "policy": policy, "decoded_full": list(load_image(paths[0]).shape[:2]),
                "decoded_reduced": list(load_image(paths[0], min_size).shape[:2]),
                "full_cpu_ms_per_img": cpu_ms_per_image(paths, card, None),
                "fast_cpu_ms_per_img": cpu_ms_per_image(paths, card, min_size),
                "uint8_abs_diff": {"mean": float(diff.mean()), "p99": float(np.percentile(diff, 99)),
                                   "max": int(diff.max())},
                "tensor_abs_diff_max": float(max(tensor_diffs)),
            }
            rows.append(row)
            print(f"{policy:11s} {row['decoded_full']} -> {row['decoded_reduced']}: decode+preprocess "
                  f"{row['full_cpu_ms_per_img']:.2f} -> {row['fast_cpu_ms_per_img']:.2f} ms CPU/img; |diff| mean "
                  f"{diff.mean():.2f}, p99 {row['uint8_abs_diff']['p99']:.0f}, max {diff.max()} grey levels")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": args.count, "jpeg": "8x6 mosaics of 150 px photos, 1200x900, quality 90",
                               "input_size": args.size, "opencv": cv2.__version__, "rows": rows,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
