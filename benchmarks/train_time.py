"""Wall time and test accuracy of issue #15's two training goals, on the whole intel-scenes set.

    .venv/bin/python benchmarks/train_time.py --data ../shared/data/intel-scenes [--only freeze-all|stages14]

- freeze-all: `tledge train DATA --freeze all --augment none --img-size 224 --epochs 15`
  (goals: trunk caching <= 60 s, whole command <= 150 s on 2 cores);
- stages14: `tledge train DATA --freeze stages:14 --augment none --cache-views 2 --lr 5e-4 --epochs 6
  --batch-size 64 --dropout 0.2 --label-smoothing 0.1` (goal: >= 93% test accuracy within 20 minutes).
Each command runs as a subprocess into a temporary project folder. Recorded: wall seconds, the caching
seconds the log reports, per-epoch seconds, test accuracy with its Wilson 95% interval and sample size,
the load average before and after (the host may be shared), the CPU model. Appends to
benchmarks/results/train_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tledge.stats import wilson  # noqa: E402

COMMANDS = {
    "freeze-all": ["--freeze", "all", "--augment", "none", "--img-size", "224", "--epochs", "15"],
    "stages14": ["--freeze", "stages:14", "--augment", "none", "--cache-views", "2", "--lr", "5e-4", "--epochs", "6",
                 "--batch-size", "64", "--dropout", "0.2", "--label-smoothing", "0.1"],
}
CACHED = re.compile(r"cached in ([0-9.]+) s")
EPOCH = re.compile(r"^epoch\s+\d+/\d+ .* ([0-9.]+)s\s+\d+ img/s", re.M)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def one_run(name: str, data: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="tledge-train-time-") as tmp:
        command = [sys.executable, "-m", "tledge", "train", str(data), *COMMANDS[name], "--project", tmp, "--name", name]
        load_before = os.getloadavg()
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - started
        load_after = os.getloadavg()
        log = done.stdout + done.stderr
        metrics_path = Path(tmp) / name / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    row = {"name": name, "command": "tledge train DATA " + " ".join(COMMANDS[name]), "exit_code": done.returncode,
           "seconds": round(seconds, 1), "load_before": [round(v, 2) for v in load_before],
           "load_after": [round(v, 2) for v in load_after], "cpu": cpu_model(), "cpu_count": os.cpu_count(),
           "cache_seconds": float(m.group(1)) if (m := CACHED.search(log)) else None,
           "epoch_seconds": [float(s) for s in EPOCH.findall(log)]}
    if metrics:
        n = int(metrics["num_samples"])
        right = round(metrics["accuracy"] * n)
        row.update(test_images=n, test_acc=round(100.0 * right / n, 2),
                   test_acc_ci95=[round(100.0 * v, 2) for v in wilson(right, n)],
                   best_epoch=metrics.get("best_epoch"), best_val_acc=metrics.get("best_val_acc"))
    else:
        row["log_tail"] = log[-2000:]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "intel-scenes")
    parser.add_argument("--only", choices=sorted(COMMANDS), default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_time.json")
    args = parser.parse_args()
    rows = [one_run(name, args.data) for name in ([args.only] if args.only else COMMANDS)]
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k != "log_tail"}))
    previous = json.loads(args.out.read_text()) if args.out.is_file() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(previous + rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
