"""tledge export: ONNX (both exporters), INT8 QDQ structure, parity numbers and gate, pipeline, CLI errors.

A tiny MobileNetV2 (width 0.25, two stages, 32 px) briefly trained on generated coloured-square images, so logits
mean something and the parity numbers are on real (if small) images. The whole file runs in well under
a minute on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tledge.card import ModelCard, card_from_onnx
from tledge.checkpoint import save_checkpoint
from tledge.cli import main
from tledge.errors import ExportOptionError, TledgeError
from tledge.exporting.formats import FORMATS, parse_formats
from tledge.exporting.options import ExportOptions, check_options
from tledge.exporting.int8 import quantize_int8, select_calibration_images
from tledge.exporting.onnx_export import choose_exporter, export_onnx
from tledge.verification.parity import compare_logits, gate, parse_tolerance
from tledge.exporting.pipeline import export_run
from tledge.splits import Splits
from tledge.models.backbones import create_model

CLASSES = ["red", "green", "blue"]
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230)]
SIZE = 32


def _write_images(root: Path, split: str, per_class: int, seed: int) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    items = []
    for label, (name, colour) in enumerate(zip(CLASSES, COLOURS)):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(60, 140, size=(SIZE, SIZE, 3), dtype=np.uint8)
            top, left = rng.integers(0, SIZE // 4 + 1, size=2)
            image[top:top + 3 * SIZE // 4, left:left + 3 * SIZE // 4] = colour
            rel = f"{split}/{name}/{i:03d}.png"
            cv2.imwrite(str(root / rel), image[:, :, ::-1])
            items.append((rel, label))
    return items


# A real MobileNetV2, cut down: width 0.25 and two inverted-residual stages (20k parameters), so it trains
# in a few steps on two shared cores and still has every op kind the full model has.
ARCH_KWARGS = {"width_mult": 0.25, "inverted_residual_setting": [[1, 8, 1, 1], [6, 16, 2, 2]]}


def _card() -> ModelCard:
    return ModelCard("mobilenet_v2", CLASSES, input_size=(SIZE, SIZE), arch_kwargs=ARCH_KWARGS)


def _train_briefly(model, root: Path, items, steps: int = 15) -> None:
    """Set BatchNorm statistics from the data, then a few full-batch steps with BN frozen (eval mode)."""
    from tledge.preprocess import preprocess_file

    card = _card()
    x = torch.from_numpy(np.stack([preprocess_file(root / rel, card) for rel, _ in items]))
    y = torch.tensor([label for _, label in items])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one pass sets the statistics
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """runs/tiny: best.pt (trained a few steps), splits.json (train 16/class, test 8/class), images."""
    base = tmp_path_factory.mktemp("export")
    data = base / "data"
    train = _write_images(data, "train", 16, seed=1)
    test = _write_images(data, "test", 8, seed=2)
    run = base / "runs" / "tiny"
    run.mkdir(parents=True)
    Splits(str(data), CLASSES, {"train": train, "val": [], "test": test}).save(run)
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 3, **ARCH_KWARGS)
    _train_briefly(model, data, train)
    save_checkpoint(run / "best.pt", {"card": _card().to_dict(), "model": model.state_dict(), "epoch": 0})
    return run


@pytest.fixture(scope="module")
def tiny_model(tiny_run):
    from tledge.models.restore import load_model

    return load_model(tiny_run)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """One full export (onnx + both int8 flavours + parity), shared by the tests that inspect its outputs."""
    out = tmp_path_factory.mktemp("exported")
    result = export_run(tiny_run, "onnx,int8", out, int8_flavours="both", tolerance="int8=100")
    return result


# ----------------------------------------------------------------------------------------- formats
def test_format_table_and_unknown_format():
    assert [f.filename for f in parse_formats("int8,onnx")] == ["model.onnx", "model.int8.onnx"]
    assert FORMATS["trt-fp16"].needs_gpu and not FORMATS["int8"].needs_gpu
    with pytest.raises(TledgeError, match="onnx, int8, trt-fp16, trt-int8"):
        parse_formats("onnx,tflite")


def test_option_a_format_does_not_use_is_an_error():
    with pytest.raises(ExportOptionError, match="--workspace applies to trt-fp16, trt-int8"):
        check_options(parse_formats("onnx"), ExportOptions(workspace=512))
    with pytest.raises(ExportOptionError, match="--calib-method"):
        check_options(parse_formats("onnx,trt-fp16"), ExportOptions(calib_method="entropy"))
    with pytest.raises(ExportOptionError, match="--calib-images applies to int8"):
        check_options(parse_formats("onnx"), ExportOptions(calib_images=64))
    check_options(parse_formats("onnx,int8"), ExportOptions(calib_method="entropy"))
    check_options(parse_formats("onnx"), ExportOptions(calib_images=512, opset=17))  # the defaults, given again


def test_exporter_choice():
    assert choose_exporter(17) == "torchscript"
    assert choose_exporter(18) == "dynamo"
    assert choose_exporter(18, "torchscript") == "torchscript"
    with pytest.raises(ExportOptionError, match="opset 18"):
        choose_exporter(17, "dynamo")


# ----------------------------------------------------------------------------------------- onnx
def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_torchscript_export_opset17_dynamic_batch_and_card_round_trip(tiny_model, tmp_path):
    model, card = tiny_model
    path = export_onnx(model, card, tmp_path / "model.onnx")
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == "input" and proto.graph.output[0].name == "logits"
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    back = card_from_onnx(path)
    assert back.class_names == card.class_names and back.input_size == card.input_size
    assert back.mean == card.mean and back.precision == "fp32"
    assert back.extra["onnx"]["exporter"] == "torchscript" and back.extra["onnx"]["dynamic_batch"] is True
    assert back.extra["onnx"]["opset"] == 17
    x = np.random.default_rng(0).standard_normal((5, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run_onnx(path, x), want, rtol=1e-4, atol=1e-5)


def test_fixed_batch_export(tiny_model, tmp_path):
    model, card = tiny_model
    path = export_onnx(model, card, tmp_path / "model.onnx", batch=4)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4 and not dims[0].dim_param
    assert card_from_onnx(path).extra["onnx"]["dynamic_batch"] is False


def test_dynamo_export_opset18(tiny_model, tmp_path):
    model, card = tiny_model
    path = export_onnx(model, card, tmp_path / "model.onnx", opset=18)
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18
    assert card_from_onnx(path).extra["onnx"]["exporter"] == "dynamo"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run_onnx(path, x), want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------- int8
def _initializers(model) -> dict:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _qdq_facts(path: Path):
    model = onnx.load(str(path))
    inits = _initializers(model)
    ops = [n.op_type for n in model.graph.node]
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    return model, inits, ops, conv_weights, dq


def test_int8_qdq_structure_both_flavours(exported):
    for name, act_dtype, symmetric in (("int8", np.uint8, False), ("int8-trt", np.int8, True)):
        path = exported.path(name)
        model, inits, ops, conv_weights, dq = _qdq_facts(path)
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
        weight_dq = [n for n in dq if n.input[0] in inits and inits[n.input[0]].ndim == 4]
        assert weight_dq, "conv weights must be stored quantized"
        for node in weight_dq:
            weight, scale = inits[node.input[0]], inits[node.input[1]]
            assert weight.dtype == np.int8
            assert scale.ndim == 1 and scale.shape[0] == weight.shape[0]  # per output channel
            assert not np.any(inits[node.input[2]]) if len(node.input) > 2 else True  # symmetric weights
        q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
        zero_points = [inits[n.input[2]] for n in q_nodes if len(n.input) > 2]
        assert zero_points and all(z.dtype == act_dtype for z in zero_points)
        if symmetric:
            assert all(not np.any(z) for z in zero_points)
        card = card_from_onnx(path)
        facts = card.extra["int8"]
        assert card.precision == "int8" and facts["per_channel"] is True and facts["method"] == "minmax"
        assert facts["flavour"] == ("s8s8" if symmetric else "u8s8")
        assert facts["role"] == ("tensorrt" if symmetric else "cpu")
        assert facts["activation_symmetric"] is symmetric
        assert facts["calibration_images"] == 48 and "train split" in facts["calibration_source"]
        assert facts["nodes_excluded"] == []
        assert set(facts["latency_compared_ms_batch1"]) == {"fp32", "u8s8", "s8s8"}


def test_int8_methods_and_nodes_to_exclude(exported, tmp_path, tiny_run):
    splits = Splits.load(tiny_run)
    images = splits.paths("train")
    onnx_path = exported.path("onnx")
    first_conv = next(n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "Conv")
    for method in ("entropy", "percentile"):
        out = quantize_int8(onnx_path, tmp_path / f"{method}.onnx", images, "u8s8", method,
                            nodes_to_exclude=[first_conv])
        facts = card_from_onnx(out).extra["int8"]
        assert facts["method"] == method and facts["nodes_excluded"] == [first_conv]
        model = onnx.load(str(out))
        kept = next(n for n in model.graph.node if n.name == first_conv)
        assert kept.op_type == "Conv"
        producers = {o: n.op_type for n in model.graph.node for o in n.output}
        assert producers.get(kept.input[1]) != "DequantizeLinear"  # weight stays float
        if method == "percentile":
            assert facts["percentile"] == pytest.approx(99.999)
    with pytest.raises(ExportOptionError, match="not found"):
        quantize_int8(onnx_path, tmp_path / "x.onnx", images, nodes_to_exclude=["no_such_node"])


def test_calibration_refuses_fewer_than_32_images(tmp_path):
    with pytest.raises(TledgeError, match="at least 32"):
        select_calibration_images([tmp_path / f"{i}.png" for i in range(31)], 512, "DIR")
    paths = [tmp_path / f"{i}.png" for i in range(100)]
    picked = select_calibration_images(paths, 40)
    assert len(picked) == 40 and [paths.index(p) for p in picked] == sorted(paths.index(p) for p in picked)
    assert picked == select_calibration_images(paths, 40)  # seeded: the same images every time
    with pytest.raises(ExportOptionError, match="at least 32"):
        select_calibration_images([tmp_path / f"{i}.png" for i in range(100)], 10)


# ----------------------------------------------------------------------------------------- parity
def test_parity_numbers_on_real_images(exported):
    report = json.loads(exported.parity_path.read_text())
    assert report["images"] == 24 and report["skipped"] == []
    rows = {r["name"]: r for r in report["results"]}
    assert set(rows) == {"onnx", "int8", "int8-trt"}
    onnx_row = rows["onnx"]
    assert onnx_row["passed"] and onnx_row["agreement"] == 100.0 and onnx_row["acc_delta"] == 0.0
    assert onnx_row["max_rel_diff"] <= 1e-4 and onnx_row["backend"].startswith("onnxruntime-cpu")
    assert onnx_row["acc_reference"] > 60.0  # the tiny model learned the colours
    for row in rows.values():
        assert set(row["per_class_delta"]) == set(CLASSES)
        assert 0.0 <= row["mean_rel_diff"] <= row["max_rel_diff"]
    assert rows["int8"]["max_rel_diff"] > 0  # quantized: not bit-identical
    assert exported.passed and report["tolerances"]["int8"]["acc_drop"] == 100.0


def test_parity_metrics_and_gate_units():
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]])
    art = ref.copy()
    art[3] = [0.0, 3.0, 0.0]  # one changed answer, on a correctly classified image of class 0
    numbers = compare_logits(ref, art, [0, 1, 2, 0], CLASSES)
    assert numbers["agreement"] == 75.0 and numbers["acc_delta"] == -25.0
    assert numbers["max_rel_diff"] == pytest.approx(1.5)
    assert numbers["per_class_delta"] == {"red": -50.0, "green": 0.0, "blue": 0.0}
    assert (numbers["images"], numbers["gains"], numbers["losses"]) == (4, 0, 1)
    tol = parse_tolerance(None)
    fp32 = gate(numbers, "fp32", tol)  # logit distance and 100% agreement are facts, judged as observed
    assert fp32.outcome == "over" and len(fp32.failures) == 2
    fp16 = gate(numbers, "fp16", tol)  # 3 of 4 agree: even the interval's top (95.6%) is under 99.5%
    assert fp16.outcome == "over" and "top-1 agreement" in fp16.failures[0]
    small = gate(numbers, "int8", tol)  # a 25-point drop on 4 images: the data cannot tell
    assert small.outcome == "inconclusive" and small.failures == [] and small.images_needed > 4
    assert gate(numbers, "int8", parse_tolerance("int8=100")).outcome == "within"
    custom = parse_tolerance("onnx=1e-3,fp16.agreement=99,int8.agreement=90")
    assert custom["fp32"] == {"agreement": 100.0, "rel_diff": 1e-3}
    assert custom["fp16"]["agreement"] == 99.0 and custom["int8"] == {"acc_drop": 1.0, "agreement": 90.0}
    for bad in ("tflite=1", "int8", "int8.speed=2", "int8=abc"):
        with pytest.raises(ExportOptionError):
            parse_tolerance(bad)


def _perturb_weights(src: Path, dst: Path, factor: float = 1.5) -> None:
    """Scale the classifier weight initializer: a deliberately wrong artifact with the same card."""
    model = onnx.load(str(src))
    gemm = next(n for n in model.graph.node if n.op_type in ("Gemm", "MatMul"))
    for init in model.graph.initializer:
        if init.name == gemm.input[1]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    onnx.save(model, str(dst))


def _test_data(run: Path):
    from tledge.verification.parity import ParityData

    splits = Splits.load(run)
    return ParityData(splits.paths("test"), splits.labels("test"), "test split")


def test_gate_catches_a_perturbed_artifact(exported, tiny_model, tiny_run, tmp_path):
    from tledge.verification.parity import run_parity

    model, card = tiny_model
    bad = tmp_path / "bad.onnx"
    _perturb_weights(exported.path("onnx"), bad)

    def reference(batch):
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    results, _ = run_parity(reference, [("good", exported.path("onnx"), "fp32"), ("bad", bad, "fp32")],
                            _test_data(tiny_run), card)
    good, bad_result = results
    assert good.passed
    assert not bad_result.passed and any("logit scale" in f for f in bad_result.failures)


def test_cli_exit_3_on_perturbed_artifact(tiny_run, tmp_path, monkeypatch, capsys):
    import tledge.exporting.onnx_export as onnx_export

    real_export = onnx_export.export_onnx

    def export_then_perturb(*args, **kwargs):
        path = real_export(*args, **kwargs)
        _perturb_weights(path, path)
        return path

    monkeypatch.setattr(onnx_export, "export_onnx", export_then_perturb)
    out = tmp_path / "out"
    code = main(["export", str(tiny_run), "--formats", "onnx", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1 and err[0].startswith("error: parity check failed (over budget): onnx:")
    report = json.loads((out / "parity.json").read_text())
    assert report["passed"] is False and report["outcome"] == "over" and report["results"][0]["failures"]


def test_int8_over_budget_message_suggests_fixes(tiny_run, tmp_path, capsys):
    code = main(["export", str(tiny_run), "--formats", "int8", "--out", str(tmp_path / "o"),
                 "--tolerance", "int8.agreement=100.5"])
    err = capsys.readouterr().err
    assert code == 3
    assert "INT8 is over its accuracy budget" in err and "--int8-search full" in err and "trt-fp16" in err


# ----------------------------------------------------------------------------------------- pipeline / cli
def test_cli_export_default_formats_prints_table_and_next_commands(tiny_run, tmp_path, capsys):
    out = tmp_path / "exp"
    code = main(["export", str(tiny_run), "--out", str(out), "--calib-images", "32", "--tolerance", "int8=100"])
    text = capsys.readouterr().out
    assert code == 0
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    assert not (out / "model.int8.trt.onnx").exists()  # only with trt-int8 or --int8-flavours both
    assert "agreement %" in text and "model.int8.onnx" in text
    assert f"tledge predict {out / 'model.int8.onnx'}" in text and f"tledge bench {tiny_run}" in text
    assert f"tledge verify {out / 'model.int8.onnx'}   # on the device" in text
    assert card_from_onnx(out / "model.int8.onnx").extra["int8"]["calibration_images"] == 32


def test_bare_checkpoint_needs_calib_data_and_uses_parity_data(tiny_run, tmp_path, capsys):
    import shutil

    bare = tmp_path / "elsewhere" / "best.pt"
    bare.parent.mkdir()
    shutil.copy(tiny_run / "best.pt", bare)
    code = main(["export", str(bare), "--formats", "int8"])
    assert code == 2
    assert "--calib-data" in capsys.readouterr().err
    data_root = Path(Splits.load(tiny_run).root)
    code = main(["export", str(bare), "--formats", "onnx,int8", "--calib-data", str(data_root / "train"),
                 "--parity-data", str(data_root / "test"), "--tolerance", "int8=100"])
    out = capsys.readouterr().out
    assert code == 0 and (bare.parent / "export" / "parity.json").is_file()
    assert "--data" in out
    # no parity source at all: a warning, no parity.json
    shutil.rmtree(bare.parent / "export")
    code = main(["export", str(bare), "--formats", "onnx"])
    assert code == 0 and "warning: no parity check" in capsys.readouterr().err
    assert not (bare.parent / "export" / "parity.json").exists()


def test_fixed_batch_pipeline_pads_parity_batches(tiny_run, tmp_path):
    result = export_run(tiny_run, "onnx", tmp_path / "b", batch=5)
    assert result.passed and result.rows[0].parity.images == 24  # 24 images in batches of exactly 5


@pytest.mark.parametrize("argv, message", [
    (["export", "{missing}"], "no such file or folder"),
    (["export", "{empty_dir}"], "has no best.pt"),
    (["export", "{corrupt}"], "not a readable checkpoint"),
    (["export", "{run}", "--formats", "onnx,tflite"], "unknown export format 'tflite'"),
    (["export", "{run}", "--formats", "onnx", "--workspace", "256"], "--workspace applies to trt-fp16"),
    (["export", "{run}", "--formats", "int8", "--calib-data", "{few}"], "at least 32"),
    (["export", "{run}", "--formats", "int8", "--calib-images", "8"], "at least 32"),
    (["export", "{run}", "--formats", "trt-fp16"], "GPU"),
    (["export", "{run}", "--formats", "trt-int8", "--max-batch", "8"], "GPU"),
    (["export", "{run}", "--opset", "17", "--exporter", "dynamo"], "opset 18"),
    (["export", "{run}", "--tolerance", "int8:2"], "--tolerance"),
    (["export", "{run}", "--formats", "onnx", "--parity-data", "{few}"], "one subfolder per class"),
])
def test_user_errors_exit_2_with_one_line(argv, message, tiny_run, tmp_path, capsys):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    few = tmp_path / "few"
    few.mkdir()
    for i in range(5):
        cv2.imwrite(str(few / f"{i}.png"), np.full((SIZE, SIZE, 3), i * 40, np.uint8))
    values = {"missing": tmp_path / "nope", "empty_dir": empty_dir, "corrupt": corrupt, "run": tiny_run, "few": few}
    argv = [a.format(**values) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tiny_run / "export").exists()  # nothing was started


def test_cli_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, tledge.cli.export, tledge.exporting.formats; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
