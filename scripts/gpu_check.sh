#!/usr/bin/env bash
# Every GPU path of tledge in one command, on a fresh NVIDIA machine (datacenter GPU or Jetson):
#   install (project + GPU extras), CUDA AMP training, TensorRT FP16 + INT8 engine builds with parity,
#   ONNX Runtime CUDA and TensorRT EPs (engine cache reused on the second start), predict on every artifact
#   (GPU compute time for engines), bench with GPU time, and the @pytest.mark.gpu tests.
# Each step has its own timeout; a step whose input failed is skipped with the reason. Prints a table
# (ok / failed / skipped + reason) and writes OUT/gpu_check.json. Without a CUDA device every step is
# "skipped (no CUDA device)" and the exit status is 0; otherwise it is 1 when any step failed.
#
# Usage: scripts/gpu_check.sh [--no-install] [--extra gpu|gpu-cu13|jetson] [--data DIR] [--out DIR]
#   --no-install   use what is installed (e.g. on Jetson, where TensorRT/onnxruntime-gpu come from JetPack)
#   --extra        the GPU extra to install (default gpu: CUDA 12 builds, driver >= 525)
# Environment: PYTHON (default python3). Fits in about 10 minutes on one datacenter GPU.
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
    --extra) EXTRA=$2; shift ;;
    --data) DATA=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
rm -rf "$OUT"; mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"
RUN="$OUT/run"
EXPORT="$RUN/export"

# A CUDA device, asked of the driver itself (libcuda; no torch, no nvidia-smi, so it works on Jetson too and
# respects CUDA_VISIBLE_DEVICES).
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

status_of() { awk -F'\t' -v n="$1" '$1 == n {print $2}' "$RESULTS" | tail -n 1; }

record() {  # record NAME STATUS SECONDS REASON
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"
}

# step NAME TIMEOUT_S NEEDS COMMAND... : NEEDS is a comma-separated list of steps that must be ok ("-": none)
step() {
  local name=$1 limit=$2 needs=$3; shift 3
  if [ -n "$GPU_REASON" ]; then record "$name" skipped 0 "no CUDA device"; return; fi
  local need
  for need in ${needs//,/ }; do
    [ "$need" = "-" ] && continue
    if [ "$(status_of "$need")" != ok ]; then record "$name" skipped 0 "needs $need"; return; fi
  done
  echo "== $name (timeout ${limit}s): $*"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    local note=""  # pytest's summary line says how many ran and how many were skipped
    [[ $name == pytest* ]] && note=$(grep -E "passed|skipped|deselected" "$OUT/$name.log" | tail -n 1 | cut -c1-120 | tr '\t' ' ')
    record "$name" ok "$dt" "$note"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    record "$name" failed "$dt" "timed out after ${limit}s ($OUT/$name.log)"
  else
    local last
    last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-160 | tr '\t' ' ')
    record "$name" failed "$dt" "exit $rc: $last"
  fi
  tail -n 3 "$OUT/$name.log"
}

TL=("$PY" -m tledge)
if [ "$INSTALL" = 1 ] || [ -n "$GPU_REASON" ]; then
  step install 600 - "$PY" -m pip install -e ".[train,export,$EXTRA]" "pytest>=7.4" "vermin>=1.6"
else
  record install skipped 0 "--no-install"
fi
step environment 120 - "$PY" - <<'PY'
import onnxruntime as ort, torch
from tledge.runtime.backends.ort_install import diagnose
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
report = diagnose()
print(report.line())
assert not report.problem, report.problem
assert "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime without CUDA"
try:
    import tensorrt
    print("tensorrt", tensorrt.__version__)
except Exception as exc:
    print("tensorrt: not importable:", exc)
PY
[ -z "$DATA" ] && DATA=$("$PY" -c "from tledge.data import demo_data_dir; print(demo_data_dir())" 2>/dev/null)

step train_cuda_amp 420 - \
  "${TL[@]}" train "$DATA" --model mobilenet_v2 --img-size 96 --epochs 2 --device cuda --project "$OUT" --name run --exist-ok
step check_amp_log 30 train_cuda_amp grep -q "AMP" "$OUT/train_cuda_amp.log"
step export_engines_parity 600 train_cuda_amp \
  "${TL[@]}" export "$RUN" --formats onnx,int8,trt-fp16,trt-int8 --batch 1 --max-batch 32
step qdq_check_trt_int8 60 export_engines_parity "$PY" -c \
  "from tledge.export.qdq_check import require_qdq_ok; require_qdq_ok('$EXPORT/model.int8.trt.onnx', 'tensorrt')"
step predict_torch_cuda 180 train_cuda_amp \
  "${TL[@]}" predict "$RUN" "$DATA" --device cuda --batch 16 --max-frames 200 --summary-json "$OUT/predict_torch.json"
step predict_ort_cuda 180 export_engines_parity \
  "${TL[@]}" predict "$EXPORT/model.onnx" "$DATA" --provider cuda --batch 16 --max-frames 200
step predict_ort_trt_first 420 export_engines_parity \
  "${TL[@]}" predict "$EXPORT/model.onnx" "$DATA" --provider tensorrt --batch 16 --max-frames 200
step predict_ort_trt_cached 180 predict_ort_trt_first \
  "${TL[@]}" predict "$EXPORT/model.onnx" "$DATA" --provider tensorrt --batch 16 --max-frames 200
step ort_trt_engine_cache 30 predict_ort_trt_cached bash -c \
  "ls '$EXPORT/model.onnx.trt-cache' | grep -q . && grep -q 'provider tensorrt' '$OUT/predict_ort_trt_cached.log'"
step predict_trt_fp16 180 export_engines_parity \
  "${TL[@]}" predict "$EXPORT/model.fp16.engine" "$DATA" --batch 16 --max-frames 200 --summary-json "$OUT/predict_trt_fp16.json"
step predict_trt_int8 180 export_engines_parity \
  "${TL[@]}" predict "$EXPORT/model.int8.engine" "$DATA" --batch 16 --max-frames 200 --summary-json "$OUT/predict_trt_int8.json"
step engine_gpu_time 30 predict_trt_fp16 "$PY" -c \
  "import json; s = json.load(open('$OUT/predict_trt_fp16.json')); assert s['stages_ms']['gpu_compute']['count'] > 0, s"
step bench_gpu_time 420 export_engines_parity \
  "${TL[@]}" bench "$RUN" --batch 1,16 --device cuda --out "$OUT/bench"
step pytest_gpu 420 - "$PY" -m pytest -q -m gpu tests/test_gpu.py tests/test_export_tensorrt.py

"$PY" - "$RESULTS" "$OUT/gpu_check.json" "${GPU_REASON:-}" <<'PY'
import json, sys
rows = [dict(zip(("step", "status", "seconds", "reason"), line.rstrip("\n").split("\t"))) for line in open(sys.argv[1])]
for row in rows:
    row["seconds"] = int(row["seconds"])
json.dump({"gpu": not sys.argv[3], "why_not": sys.argv[3] or None, "steps": rows}, open(sys.argv[2], "w"), indent=2)
PY

echo
[ -n "$GPU_REASON" ] && echo "no GPU here: $GPU_REASON"
printf '%-24s %-34s %7s  %s\n' step status seconds reason
while IFS=$'\t' read -r name status seconds reason; do
  shown=$status
  [ "$status" = skipped ] && shown="skipped ($reason)" && reason=""
  printf '%-24s %-34s %7s  %s\n' "$name" "$shown" "$seconds" "$reason"
done < "$RESULTS"
echo "json: $OUT/gpu_check.json"
[ -f "$OUT/bench/bench.json" ] && { echo; sed -n '/artifact/,$p' "$OUT/bench_gpu_time.log"; }
if grep -q $'\tfailed\t' "$RESULTS"; then exit 1; fi
exit 0
