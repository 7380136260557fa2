"""`tledge demo` end to end with a short setting, so the README's first command cannot rot."""

import json

from tledge.cli import main


def test_demo_runs_the_whole_job(tmp_path, capsys):
    code = main(["demo", "--epochs", "1", "--img-size", "32", "--bench-iters", "2", "--project", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    run = tmp_path / "exp"
    for name in ("best.pt", "metrics.json", "curves.png", "eval/metrics.json", "export/model.onnx",
                 "export/model.int8.onnx", "export/parity.json", "bench/bench.json", "demo_predict_summary.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_samples"] == 60 and len(metrics["class_names"]) == 10
    assert f"test accuracy {metrics['accuracy']:.4f}" in out
    bench = json.loads((run / "bench" / "bench.json").read_text())
    backends = {row["backend"] for row in bench["rows"] if row["status"] == "ok"}
    assert {"torch-cpu-fp32", "onnxruntime-cpu-fp32", "onnxruntime-cpu-int8"} <= backends
    summary = json.loads((run / "demo_predict_summary.json").read_text())
    assert summary["items"] == 8 and summary["skipped"] == 0
