"""scripts/gpu_check.sh without a CUDA device: every step is "skipped (no CUDA device)", JSON says so, exit 0.
CUDA_VISIBLE_DEVICES="" hides any GPU from the driver, so this holds on GPU machines too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
GPU_PATHS = {"train_cuda_amp", "export_engines_parity", "qdq_check_trt_int8", "predict_ort_cuda",
             "predict_ort_trt_first", "predict_ort_trt_cached", "ort_trt_engine_cache", "predict_trt_fp16",
             "predict_trt_int8", "engine_gpu_time", "bench_gpu_time", "pytest_gpu"}


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
@pytest.mark.parametrize("args", [[], ["--no-install"]])
def test_without_gpu_every_step_is_skipped(tmp_path, args):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    out = tmp_path / "check"
    done = subprocess.run(["bash", str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["gpu"] is False and report["why_not"].startswith("no CUDA device")
    steps = {row["step"]: row for row in report["steps"]}
    assert GPU_PATHS | {"install", "environment"} <= set(steps)
    assert all(row["status"] == "skipped" and row["reason"] == "no CUDA device" for row in steps.values())
    table = [line for line in done.stdout.splitlines() if line.split(" ")[0] in steps]
    assert len(table) == len(steps) and all("skipped (no CUDA device)" in line for line in table)


def test_every_step_has_its_own_timeout():
    calls = re.findall(r"^step (\S+) (\S+) (\S+)", SCRIPT.read_text(), flags=re.M)
    assert {name for name, *_ in calls} >= GPU_PATHS
    assert all(limit.isdigit() and 0 < int(limit) <= 600 for _, limit, _ in calls)
