"""OpenVINO: the openvino / openvino-int8 export formats (IR converted from the FP32 and CPU INT8 ONNX), the card
in the IR, the OpenVINO CPU backend (.xml, and an .onnx with provider="openvino") against ONNX Runtime, parity
rows, predict / bench / verify / info on an IR, and the one-line error without the openvino package.

Real conversions and real runtimes on test_export's tiny MobileNetV2. INT8 is compared by top-1 agreement with
ONNX Runtime's INT8, never by logits: the integer kernels (and their rounding) differ by runtime and CPU kind.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_export import tiny_run  # noqa: F401 - the shared module-scoped fixture
from tledge.card import card_from_onnx
from tledge.cli import main
from tledge.errors import MissingDependency
from tledge.exporting.pipeline import export_run
from tledge.preprocess import load_batch, load_image
from tledge.runtime.backends import artifact_kind, load_backend
from tledge.runtime.bench import artifact_format, bench
from tledge.runtime.options import BenchOptions
from tledge.runtime.options import PredictRequest
from tledge.runtime.runner import predict_backend_options
from tledge.splits import Splits

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install 'tledge[openvino]')")


@pytest.fixture(scope="module")
def ov_export(tiny_run, tmp_path_factory):  # noqa: F811
    """onnx, int8, openvino, openvino-int8 with parity on the test split and a parity pack (for verify)."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed (pip install 'tledge[openvino]')")
    out = tmp_path_factory.mktemp("openvino")
    return export_run(tiny_run, "onnx,int8,openvino,openvino-int8", out, tolerance="int8=100")


def _test_batch(run: Path, card) -> np.ndarray:
    batch, kept = load_batch(Splits.load(run).paths("test"), card)
    assert len(kept) == 24
    return batch


@needs_openvino
def test_ir_files_and_card_round_trip(ov_export):
    xml, xml8 = ov_export["openvino"], ov_export["openvino-int8"]
    assert (xml.name, xml8.name) == ("model.openvino.xml", "model.int8.openvino.xml")
    assert xml.with_suffix(".bin").stat().st_size > 40_000  # 20k float32 weights: not compressed to FP16
    assert xml8.with_suffix(".bin").is_file()
    assert not [p for p in ov_export.out_dir.iterdir() if p.name.startswith(".tledge-openvino")]
    from tledge.runtime.info import read_card

    for ir, onnx_name, precision in ((xml, "onnx", "fp32"), (xml8, "int8", "int8")):
        card, source = read_card(ir), card_from_onnx(ov_export[onnx_name])
        assert card.precision == precision
        assert card.extra["openvino"]["source"] == ov_export[onnx_name].name
        assert card.extra["openvino"]["weights"] == ir.with_suffix(".bin").name
        assert {k: v for k, v in card.to_dict().items() if k != "extra"} == \
            {k: v for k, v in source.to_dict().items() if k != "extra"}
        assert {k: v for k, v in card.extra.items() if k != "openvino"} == source.extra


@needs_openvino
def test_fp32_ir_matches_onnxruntime(ov_export, tiny_run):  # noqa: F811
    with load_backend(ov_export["onnx"], device="cpu") as ort, load_backend(ov_export["openvino"]) as ov:
        assert ov.name == "openvino-cpu-fp32" and ov.max_batch is None
        batch = _test_batch(tiny_run, ort.card)
        want, got = ort.predict(batch), ov.predict(batch)
        single = ov.predict(batch[:1])  # dynamic batch: one image after 24
    assert got.shape == (24, 3) and single.shape == (1, 3)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() / scale < 1e-4
    assert np.abs(single - want[:1]).max() / scale < 1e-4


@needs_openvino
def test_onnx_through_openvino_with_provider_option(ov_export, tiny_run):  # noqa: F811
    options = predict_backend_options(PredictRequest(ov_export["onnx"], "x.jpg", provider="openvino", threads=1))
    assert options == {"provider": "openvino", "threads": 1}  # ONNX Runtime's spin and batch are not OpenVINO's
    with load_backend(ov_export["onnx"], "auto", **options) as ov, load_backend(ov_export["onnx"], "cpu") as ort:
        assert ov.name == "openvino-cpu-fp32"
        assert int(ov.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        batch = _test_batch(tiny_run, ort.card)
        want = ort.predict(batch)
        assert np.abs(ov.predict(batch) - want).max() / np.abs(want).max() < 1e-4


@needs_openvino
def test_int8_ir_agrees_with_onnxruntime_int8_on_top1(ov_export, tiny_run):  # noqa: F811
    with load_backend(ov_export["int8"], device="cpu") as ort, load_backend(ov_export["openvino-int8"]) as ov, \
            load_backend(ov_export["onnx"], device="cpu") as fp32:
        assert ov.name == "openvino-cpu-int8"
        batch = _test_batch(tiny_run, ort.card)
        ort8, ov8, ref = ort.predict(batch).argmax(1), ov.predict(batch).argmax(1), fp32.predict(batch).argmax(1)
    assert np.mean(ov8 == ort8) >= 0.9
    assert np.mean(ov8 == ref) >= 0.9


@needs_openvino
def test_openvino_parity_rows(ov_export):
    rows = {r.format: r for r in ov_export.rows}
    assert list(rows) == ["onnx", "int8", "openvino", "openvino-int8"]
    assert (rows["openvino"].kind, rows["openvino-int8"].kind) == ("fp32", "int8")
    fp32 = rows["openvino"].parity
    assert fp32.backend == "openvino-cpu-fp32" and fp32.outcome == "within" and fp32.agreement == 100.0
    assert fp32.max_rel_diff < 1e-4
    assert rows["openvino-int8"].parity.backend == "openvino-cpu-int8"
    written = json.loads((ov_export.out_dir / "parity.json").read_text())
    assert [r["name"] for r in written["results"]] == ["onnx", "int8", "openvino", "openvino-int8"]
    assert written["results"][2]["environment"]["runtime"] == "openvino"
    assert (ov_export.out_dir / "model.openvino.xml.verdicts.json").is_file()


@needs_openvino
def test_uint8_input_onnx_through_openvino(tiny_run, tmp_path):  # noqa: F811
    """A model with its normalization in the graph (export --input uint8: uint8 NHWC) runs the same in OpenVINO."""
    result = export_run(tiny_run, "onnx", tmp_path / "u", input="uint8", parity=False)
    path = tmp_path / "u" / "model.uint8.onnx"
    images = np.stack([cv2.resize(load_image(p), (32, 32)) for p in Splits.load(tiny_run).paths("test")[:8]])
    with load_backend(path, "cpu") as ort, load_backend(path, "cpu", provider="openvino") as ov:
        assert ov.card.input_format == "uint8" and ov.name == "openvino-cpu-fp32"
        want, got = ort.predict(images), ov.predict(images)
    assert images.dtype == np.uint8 and got.shape == (8, 3)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
    assert result.rows[0].ok


@needs_openvino
def test_openvino_int8_alone_quantizes_without_an_int8_row(tiny_run, tmp_path):  # noqa: F811
    result = export_run(tiny_run, "openvino-int8", tmp_path / "o", tolerance="int8=100", pack_images=0)
    assert [r.format for r in result.rows] == ["openvino-int8"]
    assert (tmp_path / "o" / "model.int8.openvino.xml").is_file()


@needs_openvino
def test_predict_bench_verify_info_accept_an_ir(ov_export, tiny_run, tmp_path, capsys):  # noqa: F811
    xml = ov_export["openvino"]
    image = Splits.load(tiny_run).paths("test")[0]
    assert artifact_kind(xml) == "openvino" and artifact_format(xml) == "openvino"
    assert artifact_format(ov_export["openvino-int8"]) == "openvino-int8"
    assert main(["predict", str(xml), str(image), "--threads", "1", "--json", str(tmp_path / "p.json")]) == 0
    line = json.loads((tmp_path / "p.json").read_text().splitlines()[0])
    assert line["label"] == "red" and line["source"] == str(image)  # test/red/000.png
    assert main(["verify", str(xml)]) == 0
    assert "openvino" in capsys.readouterr().out
    assert main(["info", str(xml), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"
    files = [ov_export["onnx"], xml, ov_export["int8"], ov_export["openvino-int8"]]
    result = bench([str(p) for p in files], options=BenchOptions(batches=(1,), iters=3, warmup=1, threads=1))
    rows = [(r["artifact"], r["backend"], r["status"], r["parity"]) for r in result["rows"]]
    # each .onnx also on OpenVINO, right after its ONNX Runtime row; the parity column says where export judged it
    assert rows == [("model.onnx", "onnxruntime-cpu-fp32", "ok", "within"),
                    ("model.onnx", "openvino-cpu-fp32", "ok", "not verified here"),
                    (xml.name, "openvino-cpu-fp32", "ok", "within"),
                    ("model.int8.onnx", "onnxruntime-cpu-int8", "ok", "within"),
                    ("model.int8.onnx", "openvino-cpu-int8", "ok", "not verified here"),
                    (ov_export["openvino-int8"].name, "openvino-cpu-int8", "ok", "within")]
    by_backend = {(r["artifact"], r["backend"]): r for r in result["rows"]}
    assert by_backend[(xml.name, "openvino-cpu-fp32")]["accuracy"] == by_backend[("model.onnx", "onnxruntime-cpu-fp32")]["accuracy"]
    assert by_backend[(xml.name, "openvino-cpu-fp32")]["size_mb"] == pytest.approx(
        (xml.stat().st_size + xml.with_suffix(".bin").stat().st_size) / 1e6)
    assert result["machine"]["openvino"]


def test_missing_openvino_is_one_line_naming_the_extra(tiny_run, tmp_path, monkeypatch):  # noqa: F811
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    monkeypatch.delitem(__import__("sys").modules, "openvino", raising=False)
    xml = tmp_path / "model.openvino.xml"
    xml.write_text("<net/>")
    with pytest.raises(MissingDependency) as caught:
        load_backend(xml)
    assert "pip install 'tledge[openvino]'" in str(caught.value) and "\n" not in str(caught.value)
    (row,) = bench([str(xml)], options=BenchOptions(batches=(1,)))["rows"]
    assert row["status"].startswith("failed:") and "tledge[openvino]" in row["status"]
    with pytest.raises(MissingDependency, match=r"the openvino export format needs"):
        export_run(tiny_run, "onnx,openvino", tmp_path / "none")
    assert not (tmp_path / "none").exists()  # found before any work
