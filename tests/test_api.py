"""The public Python API: the issue's snippet on the built-in demo data, load/predict on every input kind,
stream with latency, bench rows, export steps that fail one by one, and CLI = API for the same input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import tledge
import tledge.api
from test_runtime_helpers import CLASSES, artifacts  # noqa: F401
from tledge.cli import main
from tledge.data import demo_data_dir
from tledge.preprocess import load_image


def _imagenet_cached() -> bool:
    from tledge.models.imagenet import cache_dir

    return (cache_dir() / "mobilenet_v2-b0353104.pth").is_file()


@pytest.mark.skipif(not _imagenet_cached(), reason="MobileNetV2 ImageNet weights are not in the torch cache")
def test_issue_snippet_runs_as_written_on_the_demo_data(tmp_path):
    run = tledge.train(demo_data_dir(), model="mobilenet_v2", weights="imagenet", freeze="all", epochs=1,
                       img_size=32, project=str(tmp_path / "runs"), name="scenes")
    assert run.dir == tmp_path / "runs" / "scenes" and (run.dir / "best.pt").is_file()
    assert run.metrics["num_samples"] == 60 and 0.0 <= run.metrics["accuracy"] <= 1.0
    exp = tledge.export(run, formats=["onnx", "int8"])
    assert exp["onnx"] == run.dir / "export" / "model.onnx" and exp["int8"].is_file()
    assert [row["format"] for row in exp.parity] == ["onnx", "int8"]
    assert exp.parity[0]["images"] == 60 and exp.parity[0]["agreement"] == 100.0
    model = tledge.load(exp["int8"])
    image = next((demo_data_dir() / "bag").glob("*.png"))
    preds = model.predict(str(image))
    assert len(preds) == 1
    assert isinstance(preds[0].label, str) and 0.0 <= preds[0].score <= 1.0
    assert preds[0].topk[0] == (preds[0].label, preds[0].score) and len(preds[0].topk) == 5
    streamed = list(model.stream(str(demo_data_dir() / "bag"), max_frames=3))
    assert len(streamed) == 3 and all(p.latency_ms is not None and p.latency_ms >= 0 for p in streamed)
    table = tledge.bench(run, batches=(1,), iters=2, warmup=0)
    formats = {row["format"] for row in table if row["status"] == "ok"}
    assert {"pytorch", "onnx", "onnx-int8"} <= formats


def test_predict_takes_paths_arrays_lists_and_folders(artifacts, tmp_path):  # noqa: F811
    paths = artifacts["paths"]
    with tledge.load(artifacts["onnx"], topk=2) as model:
        assert model.class_names == CLASSES
        one = model.predict(paths[0])
        rgb = load_image(paths[0])
        from_array = model.predict(rgb)
        mixed = model.predict([str(paths[1]), rgb])
        folder = model.predict(paths[0].parent.parent)
    assert one[0].label == from_array[0].label and one[0].score == pytest.approx(from_array[0].score, abs=1e-6)
    assert len(one[0].topk) == 2 and one[0].topk[0][1] >= one[0].topk[1][1]
    assert [p.source for p in mixed] == [str(paths[1]), None]
    assert len(folder) == len(paths) and sum(p.score for p in folder[:1]) <= 1.0


def test_predict_rejects_bad_inputs(artifacts, tmp_path):  # noqa: F811
    with tledge.load(artifacts["onnx"]) as model:
        with pytest.raises(tledge.TledgeError, match="HxWx3 uint8 RGB"):
            model.predict(np.zeros((8, 8), np.uint8))
        with pytest.raises(tledge.TledgeError, match="no such image"):
            model.predict(tmp_path / "missing.jpg")
        folder = tmp_path / "mixed"
        folder.mkdir()
        (folder / "ok.png").write_bytes(artifacts["paths"][1].read_bytes())
        (folder / "broken.jpg").write_bytes(b"not an image")
        assert len(model.predict(folder)) == 1 and "broken.jpg" in model.skipped[0]
    with pytest.raises(tledge.TledgeError, match="topk 0"):
        tledge.load(artifacts["onnx"], topk=0)


def test_cli_and_api_give_the_same_answers(artifacts, tmp_path, capsys):  # noqa: F811
    folder = artifacts["paths"][0].parent.parent
    jsonl = tmp_path / "p.jsonl"
    assert main(["predict", str(artifacts["onnx"]), str(folder), "--topk", "3", "--json", str(jsonl)]) == 0
    capsys.readouterr()
    cli_records = {r["source"]: r for r in map(json.loads, jsonl.read_text().splitlines())}
    with tledge.load(artifacts["onnx"], topk=3) as model:
        api = model.predict(folder)
    assert len(api) == len(cli_records)
    for pred in api:
        record = cli_records[pred.source]
        assert [t["label"] for t in record["topk"]] == [label for label, _ in pred.topk]
        np.testing.assert_allclose([t["prob"] for t in record["topk"]], [s for _, s in pred.topk], atol=1e-6)


def test_load_a_run_folder_and_a_checkpoint_agree(artifacts):  # noqa: F811
    image = cv2.cvtColor(cv2.imread(str(artifacts["paths"][2])), cv2.COLOR_BGR2RGB)
    with tledge.load(artifacts["run"]) as run_model, tledge.load(artifacts["pt"]) as pt_model:
        a, b = run_model.predict(image)[0], pt_model.predict(image)[0]
    assert a.label == b.label and a.score == pytest.approx(b.score, abs=1e-6)


def test_bench_returns_rows(artifacts):  # noqa: F811
    rows = tledge.bench(artifacts["onnx"], batches=(2,), iters=2, warmup=0)
    # the .onnx on ONNX Runtime, then on every other installed runtime that opens it (OpenVINO, in the dev extra)
    assert [r["backend"].split("-")[0] for r in rows] == ["onnxruntime"] + (
        ["openvino"] if importlib.util.find_spec("openvino") else [])
    assert all(r["status"] == "ok" and r["batch"] == 2 and r["p50_ms"] > 0 for r in rows)


def test_evaluate_matches_the_cli_and_the_predictions(artifacts, tmp_path, capsys):  # noqa: F811
    import shutil

    folder = artifacts["paths"][0].parent.parent
    for name in ("api", "cli"):
        (tmp_path / name).mkdir()
        shutil.copy(artifacts["pt"], tmp_path / name / "best.pt")
    report = tledge.evaluate(tmp_path / "api" / "best.pt", folder, device="cpu", batch_size=2,
                             json=tmp_path / "m.json")
    assert main(["eval", str(tmp_path / "cli" / "best.pt"), str(folder), "--batch-size", "3"]) == 0
    capsys.readouterr()
    cli = json.loads((tmp_path / "cli" / f"eval-{folder.name}" / "metrics.json").read_text())
    assert json.loads((tmp_path / "m.json").read_text())["accuracy"] == report["accuracy"] == cli["accuracy"]
    assert report["confusion_matrix"] == cli["confusion_matrix"] and report["num_samples"] == len(artifacts["paths"])
    with tledge.load(artifacts["pt"], device="cpu") as model:
        preds = model.predict(folder)
    right = sum(p.label == Path(p.source).parent.name for p in preds)
    assert report["accuracy"] == pytest.approx(right / len(preds))


def test_public_names_have_docstrings_and_hints():
    import inspect

    for name in ("train", "evaluate", "export", "load", "bench"):
        function = getattr(tledge.api, name)
        assert function.__doc__ and len(function.__doc__) > 40, name
        assert inspect.signature(function).return_annotation is not inspect.Signature.empty, name
    for name in ("Run", "Export", "Model", "Prediction", "TledgeError"):
        assert getattr(tledge, name).__doc__, name
    assert callable(tledge.train) and callable(tledge.export)
