"""Wall time of `tledge export RUN` with the default budgeted INT8 search and with `--int8-search full`.

    .venv/bin/python benchmarks/export_time.py RUN [RUN ...]     # minutes per run on 2 cores
Each run folder is exported twice into temporary folders (its own RUN/export is left alone), first the
default, then `--int8-search full`. Recorded per export: wall seconds, the load average before and after
(the host is shared: timings move with it), the calibration passes, every search step, the chosen
calibration and the parity outcome with its interval. Appends to benchmarks/results/export_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from tledge.card import card_from_onnx
from tledge.errors import TledgeError
from tledge.exporting.pipeline import export_run
from tledge.logs import captured


def one_export(run: Path, mode: str | None) -> dict:
    lines: list[str] = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tledge-bench-") as tmp:
        out = Path(tmp) / "export"
        outcome, error = "within", None
        try:
            with captured(on_line=lambda m: lines.append(f"[{time.perf_counter() - started:6.1f} s] {m}")):
                export_run(run, "onnx,int8", out, int8_search=mode)
        except TledgeError as exc:
            outcome, error = {3: "over", 4: "inconclusive"}.get(exc.exit_code, "error"), str(exc)
        seconds = time.perf_counter() - started
        parity = json.loads((out / "parity.json").read_text()) if (out / "parity.json").is_file() else None
        int8 = out / "model.int8.onnx"
        search = card_from_onnx(int8).extra["int8"].get("search") if int8.is_file() else None
    row = {"run": str(run), "mode": mode or "budget (default)", "seconds": round(seconds, 1),
           "load_before": [round(v, 2) for v in load_before], "load_after": [round(v, 2) for v in os.getloadavg()],
           "outcome": outcome, "error": error, "log": lines}
    if search:
        row["search"] = {k: search[k] for k in ("method", "percentile", "fits", "stop_reason", "seconds",
                                                "calibration_seconds", "steps", "val_images")}
    if parity:
        row["parity"] = [{k: r[k] for k in ("name", "images", "agreement", "agreement_ci", "acc_delta", "acc_delta_ci",
                                            "resolvable_drop", "outcome", "images_needed")} for r in parity["results"]]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--modes", default="budget,full", help="comma-separated: budget (the default), full")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "export_time.json")
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        for mode in args.modes.split(","):
            row = one_export(run, None if mode == "budget" else mode)
            print(f"{run} {row['mode']}: {row['seconds']:.0f} s, outcome {row['outcome']}, load {row['load_before']}")
            rows.append(row)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    old = previous.get("rows", previous.get("runs", []))  # older files named the list "runs"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "export_time", "host": platform.processor() or platform.machine(),
                                    "cpus": os.cpu_count(), "rows": old + rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
