#!/usr/bin/env bash
# Every GPU path of tledge in one command, on an NVIDIA machine (datacenter GPU or Jetson), offline:
#   CUDA AMP training, TensorRT FP16 + INT8 engine builds with parity, ONNX Runtime CUDA and TensorRT
#   providers (each step checks the provider that actually ran; the engine cache is reused on the second
#   start), predict on every artifact (GPU compute time for engines), bench with GPU time, and the
#   @pytest.mark.gpu tests.
# It never uses the network: nothing is downloaded (pip runs with --no-index), tledge runs from this checkout,
# and training uses ImageNet weights only when torch's cache has them (else --weights none). Each step runs
# when the installed packages allow it and is "skipped: <package> not installed" otherwise; a step waits
# for the files it needs, not for an earlier step's verdict, so a parity gate that is inconclusive on the
# small demo data (exit 4: recorded as ok, with the reason) does not stop the steps after it.
# Each step has its own timeout. Prints a table (ok / failed / skipped: reason), writes OUT/gpu_check.json
# and OUT/gpu_check.md (a table for docs/results.md). Without a CUDA device every step is "skipped: no CUDA device" and
# the exit status is 0; otherwise it is 1 when any step failed.
#
# Usage: scripts/gpu_check.sh [--no-install] [--extra gpu|gpu-cu13|jetson] [--data DIR] [--out DIR]
#   --no-install   do not register this checkout with pip (offline, --no-deps); tledge runs from here anyway
#   --extra        the tledge extra that "not installed" reasons point to (default gpu)
# Environment: PYTHON (default python3); GPU_CHECK_FORCE=1 assumes a CUDA device without asking the driver
# (tests run the script that way against a stand-in PYTHON: tests/test_gpu_check_script.py).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
INSTALL=1
EXTRA=gpu
DATA=""
OUT=runs/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) INSTALL=0 ;;
    --extra) EXTRA=${2:-}; shift ;;
    --data) DATA=${2:-}; shift ;;
    --out) OUT=${2:-}; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "error: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$EXTRA" in gpu|gpu-cu13|jetson) ;; *) echo "error: --extra must be gpu, gpu-cu13 or jetson, got '$EXTRA'" >&2; exit 2 ;; esac
if [ -n "$DATA" ] && [ ! -d "$DATA" ]; then echo "error: --data folder not found: $DATA" >&2; exit 2; fi
[ -z "$OUT" ] && { echo "error: --out needs a folder" >&2; exit 2; }

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # tledge from this checkout, installed or not
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1  # any pip started here stays offline
rm -rf "$OUT"; mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"
RUN="$OUT/run"
EXPORT="$RUN/export"

# A CUDA device, asked of the driver itself (libcuda; no torch, no nvidia-smi, so it works on Jetson too and
# respects CUDA_VISIBLE_DEVICES).
if [ "${GPU_CHECK_FORCE:-}" = 1 ]; then
  GPU_REASON=""
else
  GPU_REASON=$("$PY" - <<'PY' 2>/dev/null
import ctypes
try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError:
    print("no CUDA device (no NVIDIA driver: libcuda.so.1 not found)")
    raise SystemExit
count = ctypes.c_int(0)
if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
    print("no CUDA device")
PY
)
  [ -z "$GPU_REASON" ] && ! "$PY" -c "pass" 2>/dev/null && GPU_REASON="no CUDA device (no $PY)"
fi

# What the installed packages allow: one "key<TAB>why not" line per capability (empty: available).
PROBES="$OUT/probes.tsv"
: > "$PROBES"
if [ -z "$GPU_REASON" ]; then
  "$PY" - "$EXTRA" > "$PROBES" 2>"$OUT/probes.log" <<'PY'
# gpu_check probes: tledge torch cuda onnx ort ort_cuda ort_trt tensorrt cudart pytest pip setuptools imagenet
import importlib
import importlib.util
import sys

extra = sys.argv[1]
hint = {"torch": "train", "torchvision": "train", "onnx": "export", "onnxscript": "export", "tensorrt": extra,
        "onnxruntime": extra, "cuda.bindings": extra, "pytest": "dev"}
dist = {"cv2": "opencv-python-headless", "cuda.bindings": "cuda-bindings", "onnxruntime": "onnxruntime-gpu"}
why = {}


def missing(*modules):
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            extra_hint = f" (pip install 'tledge[{hint[name]}]')" if name in hint else ""
            return f"{dist.get(name, name)} not installed{extra_hint}"
    return ""


why["tledge"] = missing("numpy", "cv2", "click", "tqdm", "tabulate")
why["torch"] = missing("torch", "torchvision")
why["cuda"] = why["torch"]
if not why["cuda"]:
    import torch

    if not torch.cuda.is_available():
        why["cuda"] = f"torch {torch.__version__} sees no CUDA GPU (a CPU build, or a CUDA major the driver lacks)"
why["onnx"] = missing("onnx")
why["ort"] = missing("onnxruntime")
why["ort_cuda"] = why["ort_trt"] = why["ort"]
if not why["ort"]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    for key, provider in (("ort_cuda", "CUDAExecutionProvider"), ("ort_trt", "TensorrtExecutionProvider")):
        if provider not in available:
            why[key] = f"onnxruntime-gpu not installed (onnxruntime {onnxruntime.__version__} has no {provider})"
why["tensorrt"] = missing("tensorrt")
if not why["tensorrt"]:
    try:
        importlib.import_module("tensorrt")
    except Exception as exc:  # the bindings without libnvinfer
        why["tensorrt"] = f"tensorrt installed but not loadable ({str(exc).splitlines()[0][:100]})"
if not why["ort_trt"] and why["tensorrt"]:
    why["ort_trt"] = why["tensorrt"]
why["cudart"] = missing("cuda.bindings") if why["cuda"] else ""  # .engine buffers: cuda-bindings or torch CUDA
why["pytest"] = missing("pytest")
why["pip"] = missing("pip")
why["setuptools"] = missing("setuptools")
why["imagenet"] = why["torch"]
if not why["imagenet"]:
    try:
        from tledge.models.backbones import get_spec
        from tledge.models.imagenet import cache_dir, weights_enum

        name = weights_enum(get_spec("mobilenet_v2")).url.rsplit("/", 1)[-1]
        if not (cache_dir() / name).is_file():
            why["imagenet"] = f"{name} not in torch's cache ({cache_dir()})"
    except Exception as exc:
        why["imagenet"] = f"cannot tell ({str(exc).splitlines()[0][:80]})"
for key, reason in why.items():
    print(f"{key}\t{reason}")
PY
fi
probe() { awk -F'\t' -v k="$1" '$1 == k {print $2; found=1} END {if (!found) print "cannot tell (probe failed: see probes.log)"}' "$PROBES"; }

status_of() { awk -F'\t' -v n="$1" '$1 == n {print $2}' "$RESULTS" | tail -n 1; }

record() {  # record NAME STATUS SECONDS REASON
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >> "$RESULTS"
}

# step NAME TIMEOUT_S NEEDS COMMAND...
# NEEDS is a comma-separated list ("-": none) of
#   pkg:KEY        a capability from the probes above     -> "skipped: <why not>"
#   step:NAME      a step that must be ok                 -> "skipped: needs NAME"
#   file:PATH      a file or folder an earlier step made  -> "skipped: needs PATH (not built)"
#   provider:NAME  after the command: the log must say "provider NAME" (what actually ran), else failed
#   parity         exit 4 (parity inconclusive) is ok with the reason; exit 3 (over budget) is failed
step() {
  local name=$1 limit=$2 needs=$3; shift 3
  if [ -n "$GPU_REASON" ]; then record "$name" skipped 0 "no CUDA device"; return; fi
  local need expect="" parity=0 why
  for need in ${needs//,/ }; do
    case "$need" in
      -) ;;
      pkg:*) why=$(probe "${need#pkg:}"); if [ -n "$why" ]; then record "$name" skipped 0 "$why"; return; fi ;;
      step:*) if [ "$(status_of "${need#step:}")" != ok ]; then record "$name" skipped 0 "needs ${need#step:}"; return; fi ;;
      file:*) if [ ! -e "${need#file:}" ]; then record "$name" skipped 0 "needs ${need#file:} (not built)"; return; fi ;;
      provider:*) expect=${need#provider:} ;;
      parity) parity=1 ;;
    esac
  done
  echo "== $name (timeout ${limit}s): $*"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local dt=$((SECONDS - t0)) last
  last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-160)
  if [ $rc -eq 0 ] || { [ $parity = 1 ] && [ $rc -eq 4 ]; }; then
    local note=""  # pytest's summary line says how many ran and how many were skipped
    [[ $name == pytest* ]] && note=$(grep -E "passed|skipped|deselected" "$OUT/$name.log" | tail -n 1 | cut -c1-120)
    [ $rc -eq 4 ] && note="parity inconclusive on this data (exit 4; the artifacts were built): $(grep -m1 -o 'parity inconclusive.*' "$OUT/$name.log" | cut -c1-140)"
    if [ -n "$expect" ] && ! grep -q "provider $expect\b" "$OUT/$name.log"; then
      local ran
      ran=$(grep -o 'provider [a-z0-9-]*' "$OUT/$name.log" | tail -n 1)
      record "$name" failed "$dt" "ran on ${ran#provider }, not $expect (${ran:+the provider did not load; }see $OUT/$name.log)"
    else
      record "$name" ok "$dt" "$note"
    fi
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    record "$name" failed "$dt" "timed out after ${limit}s ($OUT/$name.log)"
  elif [ $parity = 1 ] && [ $rc -eq 3 ]; then
    record "$name" failed "$dt" "parity over budget (exit 3; the artifacts were built): $last"
  else
    record "$name" failed "$dt" "exit $rc: $last"
  fi
  tail -n 3 "$OUT/$name.log"
}

TL=("$PY" -m tledge)
if [ "$INSTALL" = 0 ]; then
  record install skipped 0 "--no-install"
else
  step install 300 pkg:pip,pkg:setuptools "$PY" -m pip install --no-index --no-deps --no-build-isolation -e .
fi
step environment 120 pkg:tledge "$PY" - <<'PY'
from tledge.runtime.backends.ort_install import diagnose

for name in ("torch", "onnxruntime", "tensorrt", "cuda.bindings"):
    try:
        module = __import__(name, fromlist=["_"])
        print(name, getattr(module, "__version__", "?"))
    except Exception as exc:
        print(name, "not importable:", str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
report = diagnose()
print(report.line())
assert not report.problem, report.problem  # both onnxruntime builds installed: a broken install, not a missing one
PY
[ -z "$DATA" ] && DATA=$("$PY" -c "from tledge.data import demo_data_dir; print(demo_data_dir())" 2>/dev/null)
WEIGHTS=none
[ -z "$GPU_REASON" ] && [ -z "$(probe imagenet)" ] && WEIGHTS=imagenet
EXPORT_ARGS=(--formats onnx,int8)  # --batch/--max-batch are engine options: refused without a trt format
[ -z "$GPU_REASON" ] && [ -z "$(probe tensorrt)" ] && EXPORT_ARGS=(--formats onnx,int8,trt-fp16,trt-int8 --batch 1 --max-batch 32)

step train_cuda_amp 420 pkg:tledge,pkg:cuda \
  "${TL[@]}" train "$DATA" --model mobilenet_v2 --img-size 96 --epochs 2 --weights "$WEIGHTS" --device cuda \
  --project "$OUT" --name run --exist-ok
step check_amp_log 30 step:train_cuda_amp grep -q "AMP" "$OUT/train_cuda_amp.log"
# Parity on the whole demo folder (every image, not only the 10% test split); the FP16 gate's 99.5% still
# needs more images than the demo has to be conclusive, so exit 4 is expected there (see `parity`).
step export_engines_parity 600 pkg:tledge,pkg:torch,pkg:onnx,pkg:ort,file:"$RUN/best.pt",parity \
  "${TL[@]}" export "$RUN" "${EXPORT_ARGS[@]}" --int8-flavours both --parity-data "$DATA"
step qdq_check_trt_int8 60 pkg:onnx,file:"$EXPORT/model.int8.trt.onnx" "$PY" -c \
  "from tledge.exporting.qdq_check import require_qdq_ok; require_qdq_ok('$EXPORT/model.int8.trt.onnx', 'tensorrt')"
step predict_torch_cuda 180 pkg:cuda,file:"$RUN/best.pt",provider:cuda \
  "${TL[@]}" predict "$RUN" "$DATA" --device cuda --batch 16 --max-frames 200 --summary-json "$OUT/predict_torch.json"
step predict_ort_cuda 180 pkg:ort_cuda,file:"$EXPORT/model.onnx",provider:cuda \
  "${TL[@]}" predict "$EXPORT/model.onnx" "$DATA" --provider cuda --batch 16 --max-frames 200
step predict_ort_trt_first 420 pkg:ort_trt,file:"$EXPORT/model.onnx",provider:tensorrt \
  "${TL[@]}" predict "$EXPORT/model.onnx" "$DATA" --provider tensorrt --batch 16 --max-frames 200
step predict_ort_trt_cached 180 step:predict_ort_trt_first,provider:tensorrt \
  "${TL[@]}" predict "$EXPORT/model.onnx" "$DATA" --provider tensorrt --batch 16 --max-frames 200
step ort_trt_engine_cache 30 step:predict_ort_trt_cached bash -c "ls '$EXPORT/model.onnx.trt-cache' | grep -q ."
step predict_trt_fp16 180 pkg:tensorrt,pkg:cudart,file:"$EXPORT/model.fp16.engine",provider:tensorrt \
  "${TL[@]}" predict "$EXPORT/model.fp16.engine" "$DATA" --batch 16 --max-frames 200 --summary-json "$OUT/predict_trt_fp16.json"
step predict_trt_int8 180 pkg:tensorrt,pkg:cudart,file:"$EXPORT/model.int8.engine",provider:tensorrt \
  "${TL[@]}" predict "$EXPORT/model.int8.engine" "$DATA" --batch 16 --max-frames 200 --summary-json "$OUT/predict_trt_int8.json"
step engine_gpu_time 30 step:predict_trt_fp16 "$PY" -c \
  "import json; s = json.load(open('$OUT/predict_trt_fp16.json')); assert s['stages_ms']['gpu_compute']['count'] > 0, s"
step bench_gpu_time 420 pkg:cuda,file:"$RUN/best.pt" \
  "${TL[@]}" bench "$RUN" --batch 1,16 --device cuda --out "$OUT/bench"
step pytest_gpu 420 pkg:pytest,pkg:torch "$PY" -m pytest -q -m gpu tests/test_gpu.py tests/test_export_tensorrt.py

"$PY" - "$RESULTS" "$OUT" "${GPU_REASON:-}" "$PROBES" <<'PY'
import json, sys
from pathlib import Path

results, out, why_not, probes = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [dict(zip(("step", "status", "seconds", "reason"), line.rstrip("\n").split("\t"))) for line in open(results)]
for row in rows:
    row["seconds"] = int(row["seconds"])
missing = dict(line.rstrip("\n").split("\t", 1) for line in open(probes) if "\t" in line)
report = {"gpu": not why_not, "why_not": why_not or None, "steps": rows,
          "unavailable": {k: v for k, v in missing.items() if v}}
bench = out / "bench" / "bench.json"
if bench.is_file():
    report["bench"] = json.loads(bench.read_text()).get("rows")
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
lines = ["| step | status | seconds | reason |", "|---|---|---|---|"]
lines += [f"| {r['step']} | {r['status']} | {r['seconds']} | {r['reason'].replace('|', '/')} |" for r in rows]
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
PY

echo
[ -n "$GPU_REASON" ] && echo "no GPU here: $GPU_REASON"
printf '%-24s %7s  %s\n' step seconds status
while IFS=$'\t' read -r name status seconds reason; do
  case "$status" in
    ok) shown="ok${reason:+ ($reason)}" ;;
    *) shown="$status: $reason" ;;
  esac
  printf '%-24s %7s  %s\n' "$name" "$seconds" "$shown"
done < "$RESULTS"
echo "json: $OUT/gpu_check.json   table for docs/results.md: $OUT/gpu_check.md"
[ -f "$OUT/bench/bench.json" ] && { echo; sed -n '/artifact/,$p' "$OUT/bench_gpu_time.log"; }
if grep -q $'\tfailed\t' "$RESULTS"; then exit 1; fi
exit 0
