"""`tledge bench`: rows per artifact × batch, JSON content, baseline speed-up, failing rows, plot."""

from __future__ import annotations

import importlib.util
import json

import pytest

from test_runtime_helpers import artifacts, make_card, run_cli, write_engine_with_sidecar  # noqa: F401
from tledge.runtime.bench import ROW_KEYS, BenchOptions, bench, discover_artifacts


def test_bench_run_folder_json_and_plot(artifacts, tmp_path, capsys):
    out = tmp_path / "bench"
    code, text, err = run_cli(capsys, "bench", artifacts["run"], "--data", artifacts["images"], "--batch", "1,4",
                              "--iters", "3", "--warmup", "1", "--threads", "1", "--out", out)
    assert code == 0, err
    result = json.loads((out / "bench.json").read_text())
    rows = result["rows"]
    openvino = [("onnx", "openvino", 1), ("onnx", "openvino", 4)] if importlib.util.find_spec("openvino") else []
    assert [(r["format"], r["backend"].split("-")[0], r["batch"]) for r in rows] == [
        ("pytorch", "torch", 1), ("pytorch", "torch", 4), ("onnx", "onnxruntime", 1), ("onnx", "onnxruntime", 4),
        *openvino]  # the .onnx on every installed runtime that opens it, each right after the one before
    for row in rows:
        assert set(ROW_KEYS) <= set(row) and row["status"] == "ok"
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["throughput"] > 0 and row["size_mb"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0
    torch_rows = [r for r in rows if r["format"] == "pytorch"]
    assert all(r["speedup"] == 1.0 for r in torch_rows)
    onnx1 = next(r for r in rows if r["format"] == "onnx" and r["batch"] == 1)
    assert onnx1["speedup"] == pytest.approx(onnx1["throughput"] / torch_rows[0]["throughput"])
    assert rows[0]["accuracy"] == rows[2]["accuracy"]  # same weights, same images
    assert result["eval_images"] == 12 and result["options"]["batches"] == [1, 4]
    assert (out / "bench.png").stat().st_size > 1000
    assert "speed-up" in text and "onnxruntime-cpu-fp32" in text


def test_failing_row_does_not_stop_the_rest_and_no_baseline_is_said(artifacts, tmp_path):
    engine = write_engine_with_sidecar(tmp_path, make_card())  # no TensorRT here (or not a real engine)
    result = bench([artifacts["onnx"], engine], options=BenchOptions(batches=(2,), iters=2, warmup=0))
    rows = result["rows"]
    assert rows[0]["status"] == "ok" and rows[0]["accuracy"] is None and rows[0]["speedup"] is None
    assert rows[-1]["status"].startswith("failed: ") and rows[-1]["artifact"] == engine.name
    assert "no PyTorch" in result["baseline"]


def test_bench_uses_run_test_split_without_data(artifacts, tmp_path):
    from tledge.splits import Splits

    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    (run / "export" / "model.onnx").write_bytes(artifacts["onnx"].read_bytes())
    (run / "export" / "notes.txt").write_text("not an artifact")
    root = artifacts["images"]
    test_items = [(str(p.relative_to(root)), ["cat", "dog", "fish"].index(p.parent.name)) for p in artifacts["paths"][:5]]
    Splits(str(root), ["cat", "dog", "fish"], {"test": test_items}).save(run)
    assert [p.name for p in discover_artifacts(run)[0]] == ["model.onnx"]
    result = bench(run, options=BenchOptions(batches=(1,), iters=2, warmup=0))
    assert result["eval_images"] == 5 and result["rows"][0]["accuracy"] is not None


def test_bench_rejects_unknown_artifact(tmp_path, capsys):
    bad = tmp_path / "x.txt"
    bad.write_text("")
    code, _, err = run_cli(capsys, "bench", bad)
    assert code == 2 and len(err.strip().splitlines()) == 1
