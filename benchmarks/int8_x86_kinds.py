"""The same INT8 recipe with full-range (8-bit) and 7-bit weights, verified on this CPU and on an emulated
AVX2-only CPU (qemu-x86_64 -cpu Haswell: no AVX-512, no VNNI), from the export's own parity pack.

    .venv/bin/python benchmarks/int8_x86_kinds.py RUN        # RUN/export from a default `tledge export RUN`

The 7-bit file is the export's model.int8.onnx; the full-range one is quantized here with its card's recipe
(method, percentile, layers in float) and the same calibration photos, with reduce_range off (what tledge
wrote before). Each file is verified by `tledge.verify` in a separate process, natively and under qemu
(about 50x slower: ~10 min for 874 photos at 224 px). Writes benchmarks/results/int8_x86_kinds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tledge.card import card_from_onnx
from tledge.exporting.int8 import quantize_int8, select_calibration_images
from tledge.splits import Splits
from tledge.provenance.environment import cpu_kernels, cpu_model

QEMU = ["qemu-x86_64", "-cpu", "Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm"]
VERIFY = ("import json, sys, tledge\n"
          "r = tledge.verify(sys.argv[1], pack=sys.argv[2], record=False)\n"
          "print(json.dumps({'parity': r.parity.to_dict(), 'environment': r.environment}))\n")


def verify(path: Path, pack: Path, emulate: bool) -> dict:
    started = time.perf_counter()
    done = subprocess.run((QEMU if emulate else []) + [sys.executable, "-c", VERIFY, str(path), str(pack)],
                          capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    p = out["parity"]
    return {"cpu_kernels": out["environment"]["cpu_kernels"], "emulated": emulate, "images": p["images"],
            "acc_fp32": round(p["acc_reference"], 2), "acc_int8": round(p["acc_artifact"], 2),
            "acc_delta": round(p["acc_delta"], 2), "acc_delta_ci": [round(v, 2) for v in p["acc_delta_ci"]],
            "agreement": round(p["agreement"], 2), "outcome": p["outcome"],
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_x86_kinds.json")
    args = parser.parse_args()
    export = args.run / "export"
    seven = export / "model.int8.onnx"
    facts = card_from_onnx(seven).extra["int8"]
    splits = Splits.load(args.run)
    images = select_calibration_images(splits.paths("train"), facts["calibration_images"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "model.int8.full-range.onnx"
        quantize_int8(export / "model.onnx", full, images, method=facts["method"], percentile=facts["percentile"],
                      nodes_to_exclude=facts["nodes_excluded"], reduce_range=False)
        for name, path in (("7-bit weights (tledge's CPU INT8)", seven), ("full-range weights (before)", full)):
            for emulate in (False, True):
                row = {"file": name, **verify(path, export / "parity-pack", emulate)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {"command": f"python benchmarks/int8_x86_kinds.py {args.run}", "host_cpu": cpu_model(),
              "host_kernels": cpu_kernels(), "emulator": " ".join(QEMU),
              "recipe": {k: facts[k] for k in ("method", "percentile", "nodes_excluded", "calibration_images")},
              "load_average": os.getloadavg(), "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
