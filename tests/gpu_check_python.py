"""A stand-in for the Python that scripts/gpu_check.sh runs (its PYTHON), so the script's own logic can be
tested with its GPU steps forced on (GPU_CHECK_FORCE=1) on a machine without a GPU: step order, what each
step waits for, skip reasons, exit codes, provider checks, no network.

It is NOT tledge on a GPU. For `-m tledge CMD` it writes the files that command would write and prints the
lines the script reads, as tledge prints them (predict's "(batch N, provider P)" from
tledge.runtime.predict.format_summary; "AMP bf16" from tledge.models.device; export's exit 4 and "parity
inconclusive" from tledge.verification.parity). Every call is appended to $STANDIN_LOG as JSON.

Knobs (environment): STANDIN_MISSING="tensorrt,ort_trt" probe keys reported as not installed;
STANDIN_EXPORT_EXIT export's exit status (default 4: inconclusive on the demo data);
STANDIN_FALLBACK="tensorrt:cuda" the provider that really runs when one is asked for.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def option(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def log(argv, code=None):
    with open(os.environ["STANDIN_LOG"], "a") as fh:
        fh.write(json.dumps({"argv": argv, "pip_no_index": os.environ.get("PIP_NO_INDEX"), "code": code}) + "\n")


def probes(code: str, args) -> int:
    keys = re.search(r"# gpu_check probes: (.*)", code).group(1).split()
    missing = set(filter(None, os.environ.get("STANDIN_MISSING", "").split(",")))
    for key in keys:
        print(f"{key}\t{key.replace('_', '-') + ' not installed' if key in missing else ''}")
    return 0


def tledge(args) -> int:
    command, rest = args[0], args[1:]
    if command == "train":
        run = Path(option(rest, "--project")) / option(rest, "--name")
        run.mkdir(parents=True, exist_ok=True)
        (run / "best.pt").write_bytes(b"stand-in")
        print(f"device cuda (Stand-in GPU, AMP bf16), weights {option(rest, '--weights')}")
        return 0
    if command == "export":
        out = Path(rest[0]) / "export"
        out.mkdir(parents=True, exist_ok=True)
        names = {"onnx": ["model.onnx"], "int8": ["model.int8.onnx"], "trt-fp16": ["model.fp16.engine"],
                 "trt-int8": ["model.int8.engine"]}
        for fmt in option(rest, "--formats").split(","):
            for name in names[fmt]:
                (out / name).write_bytes(b"stand-in")
        if option(rest, "--int8-flavours") == "both" or "trt-int8" in option(rest, "--formats"):
            (out / "model.int8.trt.onnx").write_bytes(b"stand-in")
        code = int(os.environ.get("STANDIN_EXPORT_EXIT", "4"))
        if code == 4:
            print("error: parity inconclusive (too few images to tell whether the budget is kept): trt-fp16 ...")
        elif code == 3:
            print("error: parity over budget: trt-int8 accuracy drop 2.1 pt > 1.0")
        return code
    if command == "predict":
        artifact = rest[0]
        asked = option(rest, "--provider")
        fallback = dict(p.split(":") for p in os.environ.get("STANDIN_FALLBACK", "").split(",") if p)
        if artifact.endswith(".engine"):
            provider = "tensorrt"
        elif artifact.endswith(".onnx"):
            provider = fallback.get(asked, asked or "cpu")
            if provider == "tensorrt":
                cache = Path(artifact + ".trt-cache")
                cache.mkdir(exist_ok=True)
                (cache / "stand-in.engine").write_bytes(b"x")
        else:
            provider = "cuda"
        print(f"stand-in on {rest[1]} (batch {option(rest, '--batch')}, provider {provider})")
        if option(rest, "--summary-json"):
            gpu = {"count": 2, "p50_ms": 1.0} if provider == "tensorrt" else {"count": 0}
            Path(option(rest, "--summary-json")).write_text(json.dumps({"stages_ms": {"gpu_compute": gpu}}))
        return 0
    if command == "bench":
        out = Path(option(rest, "--out"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps({"rows": [{"artifact": "model.fp16.engine", "gpu_ms": 0.4}]}))
        print("artifact  backend  gpu ms/img\nmodel.fp16.engine  tensorrt-fp16  0.4")
        return 0
    print(f"stand-in: unknown tledge command {command}")
    return 2


def main(argv) -> int:
    if argv[:2] == ["-m", "tledge"]:
        code = tledge(argv[2:])
    elif argv[:2] == ["-m", "pip"]:
        code = 0
    elif argv[:2] == ["-m", "pytest"]:
        print("3 passed, 2 skipped in 1.00s")
        code = 0
    elif argv[:1] == ["-"]:
        source = sys.stdin.read()
        if "gpu_check probes" in source:
            code = probes(source, argv[1:])
        elif "import ctypes" in source and "libcuda" in source:
            code = 0  # the device probe: GPU_CHECK_FORCE=1 skips it, so it should not be asked
            print("stand-in: device probe asked although forced")
        elif "gpu_check.json" in source:  # the report writer: plain Python, run for real
            sys.argv = ["-", *argv[1:]]
            exec(compile(source, "<gpu_check report>", "exec"), {"__name__": "__main__"})
            code = 0
        else:
            code = 0
    elif argv[:1] == ["-c"]:
        code = 0
    else:
        code = 0
    log(argv, code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
