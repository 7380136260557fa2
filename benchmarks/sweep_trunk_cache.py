"""README's sweep example with the shared trunk cache and without it (--no-shared-cache), interleaved.

    nice python benchmarks/sweep_trunk_cache.py --data ../shared/data/intel-scenes --per-class 30 --repeats 1

Builds a small image folder (the first --per-class photos of each class, linked into a temp folder), then
runs README's command with a learning-rate list, so that the cells of each frozen part share a trunk:

    tledge sweep DATA --models mobilenet_v2 --freeze all,stages:10,none --img-size 150 --epochs 2 \\
        --augment none --lr 3e-4,1e-3 [--no-shared-cache]

once per mode and repeat, alternating which mode goes first, each a fresh `tledge sweep` process (one study
worker, CPU). Records per-mode wall times (median, min, max), each run's per-cell train times, the cell each
mode chose (by val accuracy) and the load average before and after. The freeze none cells cache nothing,
so they cost the same in both modes. Real MobileNetV2 ImageNet weights: --weights FILE is installed into a
temp TORCH_HOME first. Writes benchmarks/results/sweep_trunk_cache.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
GRID = ["--models", "mobilenet_v2", "--img-size", "150", "--epochs", "2", "--augment", "none"]


def build_folder(source: Path, target: Path, per_class: int) -> dict[str, int]:
    """target/<class>/ with links to the first `per_class` photos of each class of source (or source/train)."""
    root = source / "train" if (source / "train").is_dir() else source
    counts = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True)
        files = sorted(folder.glob("*.jpg"))[:per_class]
        for file in files:
            (target / folder.name / file.name).symlink_to(file.resolve())
        counts[folder.name] = len(files)
    return counts


def run_mode(data: Path, project: Path, shared: bool, freeze: str, lrs: str, env: dict) -> dict:
    command = [sys.executable, "-m", "tledge", "sweep", str(data), *GRID, "--freeze", freeze, "--lr", lrs,
               "--project", str(project), "--name", "sweep"] + ([] if shared else ["--no-shared-cache"])
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result = json.loads((project / "sweep" / "results.json").read_text())
    return {
        "mode": "shared" if shared else "own", "wall_s": round(wall, 2),
        "best": result["best"]["cell"] if result.get("best") else None,
        "best_val_acc": result["best"]["val_acc"] if result.get("best") else None,
        "cells": {c["cell"]: {"train_time_s": round(c["train_time_s"], 2), "val_acc": c["val_acc"],
                              "status": c["status"]} for c in result["cells"]},
        "shared_loads": done.stdout.count("frozen-prefix outputs shared from"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "intel-scenes")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--freeze", default="all,stages:10,none", help="README's list; none caches nothing, so "
                        "it costs the same in both modes (all,stages:10 keeps a run short)")
    parser.add_argument("--lr", default="3e-4,1e-3")
    parser.add_argument("--weights", type=Path,
                        default=ROOT.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth")
    parser.add_argument("--out", type=Path, default=RESULTS / "sweep_trunk_cache.json")
    args = parser.parse_args()

    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tledge-sweep-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               "TORCH_HOME": str(tmp / "torch")}
        subprocess.run([sys.executable, "-m", "tledge", "weights", "add", str(args.weights)], env=env, check=True,
                       capture_output=True)
        counts = build_folder(args.data, tmp / "scenes", args.per_class)
        runs = []
        for repeat in range(args.repeats):
            for shared in ((True, False) if repeat % 2 == 0 else (False, True)):
                run = run_mode(tmp / "scenes", tmp / f"r{repeat}-{'shared' if shared else 'own'}", shared,
                               args.freeze, args.lr, env)
                run["repeat"] = repeat
                runs.append(run)
                print(f"repeat {repeat} {run['mode']}: {run['wall_s']:.1f} s, best {run['best']}", flush=True)
    modes = {}
    for mode in ("shared", "own"):
        walls = [r["wall_s"] for r in runs if r["mode"] == mode]
        modes[mode] = {"median_wall_s": statistics.median(walls), "min_wall_s": min(walls), "max_wall_s": max(walls),
                       "runs": len(walls), "best_cells": [r["best"] for r in runs if r["mode"] == mode]}
    result = {
        "command": f"tledge sweep DATA {' '.join(GRID)} --freeze {args.freeze} --lr {args.lr} [--no-shared-cache]",
        "data": {"source": str(args.data), "per_class": args.per_class, "images": sum(counts.values()),
                 "classes": counts},
        "modes": modes,
        "speedup_median": round(modes["own"]["median_wall_s"] / modes["shared"]["median_wall_s"], 3),
        "same_best_cell": len({r["best"] for r in runs}) == 1,
        "runs": runs, "total_s": round(time.perf_counter() - started, 1),
        "cpu_count": os.cpu_count(), "niceness": os.nice(0), "platform": platform.platform(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}: shared {modes['shared']['median_wall_s']:.1f} s, "
          f"own {modes['own']['median_wall_s']:.1f} s, "
          f"same best cell: {result['same_best_cell']} ({result['total_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
