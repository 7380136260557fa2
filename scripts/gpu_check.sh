#!/usr/bin/env bash
# One command that exercises every GPU path on a CUDA machine and prints a table:
#   AMP training on CUDA, ONNX Runtime CUDA / TensorRT providers, TensorRT FP16 + INT8 engine builds with
#   parity, predict and bench on every artifact, and the @pytest.mark.gpu tests.
# Usage: scripts/gpu_check.sh [DATA] [OUT]     (DATA defaults to the built-in demo sample)
# Needs: pip install -e ".[train,export,gpu]" on a machine with an NVIDIA GPU and TensorRT.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-$(python -c "from tledge.data import demo_data_dir; print(demo_data_dir())")}
OUT=${2:-runs/gpu_check}
rm -rf "$OUT"; mkdir -p "$OUT"
declare -a ROWS

step() {  # step NAME COMMAND...: run, record ok/FAILED with seconds
  local name=$1; shift
  local t0=$(date +%s.%N)
  echo "== $name: $*"
  if "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status=FAILED; fi
  local dt=$(python -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
  ROWS+=("$(printf '%-28s %-7s %7ss  %s' "$name" "$status" "$dt" "$OUT/$name.log")")
  tail -n 3 "$OUT/$name.log"
}

python - <<'PY'
import torch, onnxruntime as ort
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("onnxruntime", ort.__version__, ort.get_available_providers())
try:
    import tensorrt as trt; print("tensorrt", trt.__version__)
except Exception as exc:
    print("tensorrt: not importable:", exc)
PY

RUN="$OUT/run"
step train_cuda_amp        tledge train "$DATA" --model mobilenet_v2 --img-size 96 --epochs 2 --device cuda --project "$OUT" --name run --exist-ok
step eval_cuda             tledge eval "$RUN" --device cuda
step export_all            tledge export "$RUN" --formats onnx,int8,trt-fp16,trt-int8 --batch 1 --max-batch 32
step predict_torch_cuda    tledge predict "$RUN" "$DATA" --device cuda --batch 16 --max-frames 200 --summary-json "$OUT/predict_torch.json"
step predict_ort_cuda      tledge predict "$RUN/export/model.onnx" "$DATA" --provider cuda --batch 16 --max-frames 200 --summary-json "$OUT/predict_ort_cuda.json"
step predict_ort_trt       tledge predict "$RUN/export/model.onnx" "$DATA" --provider tensorrt --batch 16 --max-frames 200
step predict_trt_fp16      tledge predict "$RUN/export/model.fp16.engine" "$DATA" --batch 16 --max-frames 200 --summary-json "$OUT/predict_trt_fp16.json"
step predict_trt_int8      tledge predict "$RUN/export/model.int8.engine" "$DATA" --batch 16 --max-frames 200
step bench_all             tledge bench "$RUN" --batch 1,16 --device cuda --out "$OUT/bench"
step pytest_gpu            python -m pytest -q -m gpu

echo; echo "== bench table"; cat "$OUT/bench_all.log" | sed -n '/artifact/,$p' || true
echo; echo "== summary"
printf '%s\n' "${ROWS[@]}"
grep -q FAILED <<<"${ROWS[*]}" && exit 1 || exit 0
