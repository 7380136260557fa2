"""scripts/gpu_check.sh without a CUDA device: every step is "skipped: no CUDA device", JSON says so, exit 0
(CUDA_VISIBLE_DEVICES="" hides any GPU from the driver, so this holds on GPU machines too). With its GPU steps
forced on (GPU_CHECK_FORCE=1) against a stand-in PYTHON (tests/gpu_check_python.py, not tledge on a GPU):
every step is reached on the script's own data although parity is inconclusive there, a step waits for the
files it needs, a missing package is "skipped: <package> not installed", a provider fallback fails its
step, and nothing goes to the network."""

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
    assert all(row["status"] == "skipped" and row["reason"] == ("--no-install" if name == "install" and args else
               "no CUDA device") for name, row in steps.items())
    table = [line for line in done.stdout.splitlines() if line.split(" ")[0] in steps]
    assert len(table) == len(steps) and all("skipped: " in line for line in table)


def test_every_step_has_its_own_timeout():
    calls = re.findall(r"^step (\S+) (\S+) (\S+)", SCRIPT.read_text(), flags=re.M)
    assert {name for name, *_ in calls} >= GPU_PATHS
    assert all(limit.isdigit() and 0 < int(limit) <= 600 for _, limit, _ in calls)


STANDIN = Path(__file__).resolve().parent / "gpu_check_python.py"
needs_shell = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                 reason="needs bash and timeout")


def _forced(tmp_path, *args, **knobs):
    """Run gpu_check.sh with GPU_CHECK_FORCE=1 and the stand-in PYTHON; returns (process, steps, calls)."""
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    python.chmod(0o755)
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True, exist_ok=True)
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, "PYTHON": str(python), "GPU_CHECK_FORCE": "1", "STANDIN_LOG": str(calls),
           **{k: str(v) for k, v in knobs.items()}}
    env.pop("PIP_NO_INDEX", None)
    out = tmp_path / "check"
    done = subprocess.run(["bash", str(SCRIPT), *args, "--data", str(data), "--out", str(out)], capture_output=True,
                          text=True, timeout=120, env=env)
    report = json.loads((out / "gpu_check.json").read_text())
    steps = {row["step"]: row for row in report["steps"]}
    return done, steps, [json.loads(line) for line in calls.read_text().splitlines()]


@needs_shell
def test_forced_gpu_steps_all_run_although_parity_is_inconclusive(tmp_path):
    done, steps, calls = _forced(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert GPU_PATHS | {"install", "environment", "check_amp_log"} <= set(steps)
    assert {name: row["status"] for name, row in steps.items() if row["status"] != "ok"} == {}
    assert steps["export_engines_parity"]["reason"].startswith("parity inconclusive on this data (exit 4")
    export = next(c["argv"] for c in calls if c["argv"][:3] == ["-m", "tledge", "export"])
    assert "trt-fp16" in export[export.index("--formats") + 1] and "--parity-data" in export
    train = next(c["argv"] for c in calls if c["argv"][:3] == ["-m", "tledge", "train"])
    assert train[train.index("--weights") + 1] in ("imagenet", "none")
    assert (tmp_path / "check" / "gpu_check.md").read_text().startswith("| step | status | seconds | reason |")


@needs_shell
def test_forced_run_makes_no_network_call(tmp_path):
    done, steps, calls = _forced(tmp_path)
    pip = [c["argv"] for c in calls if c["argv"][:2] == ["-m", "pip"]]
    assert pip and all("--no-index" in argv for argv in pip)  # the install step installs this checkout only
    assert all(c["pip_no_index"] == "1" for c in calls)  # and any pip a step starts is offline too
    text = SCRIPT.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b(curl|wget)\b|https?://|--extra-index-url|--index-url", code)


@needs_shell
def test_missing_packages_are_skipped_with_their_name_not_failed(tmp_path):
    done, steps, calls = _forced(tmp_path, STANDIN_MISSING="tensorrt,ort_cuda,ort_trt")
    assert done.returncode == 0, done.stdout[-3000:]
    export = next(c["argv"] for c in calls if c["argv"][:3] == ["-m", "tledge", "export"])
    assert export[export.index("--formats") + 1] == "onnx,int8" and "--max-batch" not in export  # engine-only
    for name in ("predict_trt_fp16", "predict_trt_int8"):
        assert steps[name] == {**steps[name], "status": "skipped", "reason": "tensorrt not installed"}
    assert steps["predict_ort_cuda"]["reason"] == "ort-cuda not installed"
    assert steps["predict_ort_trt_cached"]["reason"] == "needs predict_ort_trt_first"
    for name in ("train_cuda_amp", "export_engines_parity", "qdq_check_trt_int8", "predict_torch_cuda",
                 "bench_gpu_time", "pytest_gpu"):  # what the installed packages allow still runs
        assert steps[name]["status"] == "ok", steps[name]
    assert "skipped: tensorrt not installed" in done.stdout
    assert not [s for s in steps.values() if s["status"] == "failed"]


@needs_shell
def test_provider_fallback_fails_the_step_that_asked_for_it(tmp_path):
    done, steps, _ = _forced(tmp_path, STANDIN_FALLBACK="tensorrt:cpu")
    assert done.returncode == 1
    first = steps["predict_ort_trt_first"]
    assert first["status"] == "failed" and first["reason"].startswith("ran on cpu, not tensorrt")
    assert steps["predict_ort_trt_cached"] == {**steps["predict_ort_trt_cached"], "status": "skipped",
                                               "reason": "needs predict_ort_trt_first"}
    assert steps["predict_ort_cuda"]["status"] == "ok" and steps["predict_trt_fp16"]["status"] == "ok"


@needs_shell
def test_parity_over_budget_fails_export_but_its_artifacts_are_still_run(tmp_path):
    done, steps, _ = _forced(tmp_path, STANDIN_EXPORT_EXIT=3)
    assert done.returncode == 1
    assert steps["export_engines_parity"]["status"] == "failed"
    assert steps["export_engines_parity"]["reason"].startswith("parity over budget (exit 3")
    for name in ("predict_trt_fp16", "predict_trt_int8", "predict_ort_trt_first", "engine_gpu_time"):
        assert steps[name]["status"] == "ok", steps[name]


@needs_shell
@pytest.mark.parametrize("args, message", [
    (["--extra", "gpu-cu12"], "--extra must be gpu, gpu-cu13 or jetson"),
    (["--data", "/nonexistent/folder"], "--data folder not found"),
    (["--frobnicate"], "unknown argument: --frobnicate"),
])
def test_bad_arguments_are_one_line_exit_2(tmp_path, args, message):
    done = subprocess.run(["bash", str(SCRIPT), *args, "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and message in done.stderr


@needs_shell
def test_forced_with_the_real_python_the_probes_name_what_is_missing(tmp_path):
    """The probe script itself, run by this test's real Python (GPU forced, none here): every capability gets a
    line, and what this machine lacks (torch's CUDA, onnxruntime-gpu, tensorrt) is a skip with its reason."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: forced mode would really train")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_FORCE": "1"}
    out = tmp_path / "check"
    done = subprocess.run(["bash", str(SCRIPT), "--no-install", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    probes = dict(line.split("\t", 1) for line in (out / "probes.tsv").read_text().splitlines())
    keys = re.search(r"# gpu_check probes: (.*)", SCRIPT.read_text()).group(1).split()
    assert sorted(probes) == sorted(keys) and probes["tledge"] == ""
    steps = {row["step"]: row for row in json.loads((out / "gpu_check.json").read_text())["steps"]}
    assert steps["train_cuda_amp"]["status"] == "skipped" and "no CUDA GPU" in steps["train_cuda_amp"]["reason"]
    assert steps["export_engines_parity"]["reason"].startswith("needs ") and steps["environment"]["status"] == "ok"
    assert not [s for s in steps.values() if s["status"] == "failed"]
