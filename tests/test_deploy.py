"""Deployment files of the default export (labels.txt, DeepStream nvinfer configs, Triton entries, DEPLOY.md),
each parsed by the reading tool's rules and checked against the card; the in-graph preprocessing artifacts
(`--input uint8|uint8-nchw|pixels`, `--output probs`); `tledge eval` of exported artifacts.

Uses test_export's tiny trained MobileNetV2 run (32 px, classes red/green/blue)."""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from test_export import CLASSES, SIZE, _card, tiny_run  # noqa: F401 - the shared module-scoped fixture
from tledge.card import card_from_onnx
from tledge.exporting.pipeline import export_run

TRITON_DESCRIPTOR = Path(__file__).parent / "data" / "triton_model_config.desc"


@pytest.fixture(scope="module")
def deployed(tiny_run, tmp_path_factory):  # noqa: F811
    """The default formats (onnx, int8 with both flavours) in one export folder."""
    out = tmp_path_factory.mktemp("deployed")
    return export_run(tiny_run, "onnx,int8", out, int8_flavours="both", tolerance="int8=100", pack_images=0)


def read_key_file(path: Path) -> configparser.ConfigParser:
    """GLib GKeyFile rules (what nvinfer reads with g_key_file_load_from_file): '#' comment lines, [groups],
    key=value with case-sensitive keys, lists separated by ';', no interpolation, duplicate keys an error."""
    parser = configparser.ConfigParser(delimiters=("=",), comment_prefixes=("#",), inline_comment_prefixes=None,
                                       interpolation=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def triton_model_config():
    """Triton's ModelConfig message class from the compiled model_config.proto (see tests/data/README.md)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(TRITON_DESCRIPTOR.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def enum_name(message, field: str) -> str:
    return message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[getattr(message, field)].name


# ------------------------------------------------------------------------------------------ part 1
def test_labels_txt_one_class_per_line_in_card_order(deployed):
    out = deployed.out_dir
    assert (out / "labels.txt").read_text() == "red\ngreen\nblue\n"
    assert card_from_onnx(out / "model.onnx").class_names == CLASSES
    assert (out / "deepstream" / "labels.txt").read_text() == "red;green;blue\n"  # nvinfer classifier: one line


def test_deepstream_config_parses_as_a_key_file_with_the_artifacts_facts(deployed):
    out = deployed.out_dir
    configs = sorted(p.name for p in (out / "deepstream").glob("config_infer_*.txt"))
    # model.int8.onnx (U8 activations, CPU flavour) has none: TensorRT's parser refuses it
    assert configs == ["config_infer_model.txt", "config_infer_model_int8_trt.txt"]
    config = read_key_file(out / "deepstream" / "config_infer_model.txt")
    assert config.sections() == ["property"]
    p = config["property"]
    assert p.getint("gpu-id") == 0
    assert p.getint("network-type") == 1  # classifier
    assert p.getint("process-mode") == 1
    assert p.getint("model-color-format") == 0  # RGB
    assert p.getint("network-mode") == 0  # FP32
    assert p.getint("batch-size") == 1  # dynamic-batch ONNX: nvinfer's batch is the streammux batch
    assert p["onnx-file"] == "../model.onnx"
    assert (out / "deepstream" / p["onnx-file"]).resolve() == (out / "model.onnx").resolve()
    assert p["model-engine-file"] == "../model.onnx_b1_gpu0_fp32.engine"
    assert (out / "deepstream" / p["labelfile-path"]).read_text().strip().split(";") == CLASSES
    assert p["output-blob-names"] == "logits"
    assert [int(v) for v in p["infer-dims"].split(";")] == [3, SIZE, SIZE]
    assert [float(v) for v in p["offsets"].split(";")] == [123.675, 116.28, 103.53]
    assert p.getfloat("net-scale-factor") == pytest.approx(1 / (255 * 0.226), rel=1e-9)  # mean of the three std
    assert p.getfloat("classifier-threshold") == 0.0
    text = (out / "deepstream" / "config_infer_model.txt").read_text()
    assert "ONE net-scale-factor" in text and "--input pixels" in text and "up to 1.3% off" in text
    int8 = read_key_file(out / "deepstream" / "config_infer_model_int8_trt.txt")["property"]
    assert (int8["onnx-file"], int8.getint("network-mode")) == ("../model.int8.trt.onnx", 1)
    assert int8["model-engine-file"] == "../model.int8.trt.onnx_b1_gpu0_int8.engine"


def test_triton_entry_parses_as_model_config_and_matches_the_graph(deployed):
    out = deployed.out_dir
    assert sorted(p.name for p in (out / "triton").iterdir()) == ["mobilenet_v2"]
    folder = out / "triton" / "mobilenet_v2"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), triton_model_config()())
    assert config.name == "mobilenet_v2" == folder.name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    assert config.HasField("dynamic_batching")
    (inp,), (outp,) = config.input, config.output
    assert (inp.name, list(inp.dims)) == ("input", [3, SIZE, SIZE])
    assert enum_name(inp, "data_type") == "TYPE_FP32" == enum_name(outp, "data_type")
    assert enum_name(inp, "format") == "FORMAT_NCHW"
    assert (outp.name, list(outp.dims), outp.label_filename) == ("logits", [3], "labels.txt")
    assert (folder / "labels.txt").read_text() == "red\ngreen\nblue\n"
    assert config.parameters["tledge.input_format"].string_value == "float"
    model = folder / "1" / "model.onnx"
    assert model.read_bytes() == (out / "model.onnx").read_bytes()
    assert card_from_onnx(model).class_names == CLASSES


def test_jetson_inference_command_in_deploy_md_and_next_lines(deployed):
    out = deployed.out_dir
    command = ("imagenet --model=model.onnx --labels=labels.txt --input-blob=input --output-blob=logits "
               "INPUT_IMAGE_OR_CAMERA OUTPUT")
    text = (out / "DEPLOY.md").read_text()
    assert command in text
    assert "the same as this model's card." in text  # ImageNet mean/std, stretch resize
    assert "with logits an image whose largest logit is ≤ 0 gets no class" in text
    assert f"cd {out} && {command}   # jetson-inference" in deployed.next_commands
    assert f"tritonserver --model-repository={out / 'triton'}   # see {out / 'DEPLOY.md'}" in deployed.next_commands


def test_triton_fixed_batch_has_max_batch_0_and_full_dims(tiny_run, tmp_path):  # noqa: F811
    result = export_run(tiny_run, "onnx", tmp_path / "fixed", batch=4, parity=False)
    config = text_format.Parse((result.out_dir / "triton" / "mobilenet_v2" / "config.pbtxt").read_text(),
                               triton_model_config()())
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, 3, SIZE, SIZE]
    assert list(config.output[0].dims) == [4, 3]
    ds = read_key_file(result.out_dir / "deepstream" / "config_infer_model.txt")["property"]
    assert ds.getint("batch-size") == 4
    assert ds["model-engine-file"] == "../model.onnx_b4_gpu0_fp32.engine"


# ------------------------------------------------------------------------------------------ part 2
@pytest.fixture(scope="module")
def uint8_probs(tiny_run, tmp_path_factory):  # noqa: F811
    """--input uint8 --output probs beside model.onnx, parity-checked on the run's test split (24 images)."""
    out = tmp_path_factory.mktemp("uint8")
    return export_run(tiny_run, "onnx", out, input="uint8", output="probs", pack_images=0)


def _test_images(run: Path) -> list[np.ndarray]:
    from tledge.preprocess import load_image
    from tledge.splits import Splits

    return [load_image(p) for p in Splits.load(run).paths("test")]


def _ort(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_uint8_probs_artifact_graph_card_and_parity(uint8_probs):
    result = uint8_probs
    path = result["onnx-uint8.probs"]
    assert path.name == "model.uint8.probs.onnx"
    session = _ort(path)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("input", "tensor(uint8)", [SIZE, SIZE, 3])
    assert (out.name, out.type) == ("probs", "tensor(float)")
    card = card_from_onnx(path)
    assert (card.input_format, card.output_kind, card.layout, card.output_name) == ("uint8", "probs", "NHWC", "probs")
    assert card.extra["input"] == {"format": "uint8", "dtype": "uint8", "layout": "NHWC",
                                   "values": "0-255, normalized in the graph", "output": "probs"}
    rows = {p["format"]: p for p in result.parity}
    assert set(rows) == {"onnx", "onnx-uint8.probs"}
    checked = rows["onnx-uint8.probs"]
    assert (checked["images"], checked["agreement"], checked["outcome"]) == (24, 100.0, "within")
    assert checked["max_rel_diff"] < 1e-5  # log-probabilities vs PyTorch's log-softmax, FP32 gate 1e-4


def test_uint8_graph_equals_float_model_on_raw_pixels(uint8_probs, tiny_run):  # noqa: F811
    from tledge.card import card_from_onnx as read
    from tledge.preprocess import preprocess_batch

    out = uint8_probs.out_dir
    images = _test_images(tiny_run)
    pixels = np.stack(images)  # 32×32 already: the input size
    probs = _ort(out / "model.uint8.probs.onnx").run(None, {"input": pixels})[0]
    logits = _ort(out / "model.onnx").run(None, {"input": preprocess_batch(images, read(out / "model.onnx"))})[0]
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert probs.shape == (24, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs, want, atol=1e-6)


def test_runtime_feeds_uint8_and_skips_normalization(uint8_probs, tiny_run):  # noqa: F811
    import tledge
    from tledge.preprocess import preprocess_rgb
    from tledge.runtime.backends import load_backend

    out = uint8_probs.out_dir
    image = _test_images(tiny_run)[0]
    with load_backend(out / "model.uint8.probs.onnx", device="cpu") as backend:
        tensor = preprocess_rgb(image, backend.card)
        assert (tensor.dtype, tensor.shape) == (np.uint8, (SIZE, SIZE, 3))
        np.testing.assert_array_equal(tensor, image)  # no float work: the pixels themselves
        from_uint8 = backend.predict(tensor[None])
    with load_backend(out / "model.onnx", device="cpu") as plain:
        float_batch = preprocess_rgb(image, plain.card)[None]
        logits = plain.predict(float_batch)
        with load_backend(out / "model.uint8.probs.onnx", device="cpu") as backend:
            from_float = backend.predict(float_batch)  # the Backend contract's float NCHW batch, converted back
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(from_uint8, log_softmax, atol=1e-5)
    np.testing.assert_array_equal(from_uint8, from_float)
    got = tledge.load(out / "model.uint8.probs.onnx", device="cpu").predict(image)[0]
    want = tledge.load(out / "model.onnx", device="cpu").predict(image)[0]
    assert got.label == want.label and got.score == pytest.approx(want.score, abs=1e-5)


def test_verify_uint8_probs_artifact_from_the_parity_pack(tiny_run, tmp_path):  # noqa: F811
    """`tledge verify` re-checks the uint8/softmax model on the pack's float tensors (its backend turns them
    back into pixels), so the checksums match and the verdict is the export's."""
    import tledge

    result = export_run(tiny_run, "onnx", tmp_path / "exp", input="uint8", output="probs")
    check = tledge.verify(result["onnx-uint8.probs"])
    assert (check.outcome, check.inputs_differ, check.parity.images, check.parity.agreement) == ("within", 0, 24, 100.0)
    assert check.parity.max_rel_diff < 1e-5


def test_tensorrt_ep_profile_follows_the_uint8_layout():
    from tledge.runtime.backends.onnxrt import profile_shapes

    assert profile_shapes("input", (SIZE, SIZE), 4, nhwc=True) == {
        "trt_profile_min_shapes": "input:1x32x32x3", "trt_profile_opt_shapes": "input:4x32x32x3",
        "trt_profile_max_shapes": "input:32x32x32x3"}


def test_uint8_deploy_files_triton_uint8_nhwc(uint8_probs):
    folder = uint8_probs.out_dir / "triton" / "mobilenet_v2_uint8_probs"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), triton_model_config()())
    (inp,), (out,) = config.input, config.output
    assert (enum_name(inp, "data_type"), enum_name(inp, "format"), list(inp.dims)) == \
        ("TYPE_UINT8", "FORMAT_NHWC", [SIZE, SIZE, 3])
    assert (out.name, list(out.dims), config.max_batch_size) == ("probs", [3], 16)
    assert config.parameters["tledge.input_format"].string_value == "uint8"
    # nvinfer feeds float planar data: no DeepStream config for a uint8 model
    assert sorted(p.name for p in (uint8_probs.out_dir / "deepstream").glob("*.txt")) == \
        ["config_infer_model.txt", "labels.txt"]


def test_pixels_and_uint8_nchw_artifacts(tiny_run, tmp_path):  # noqa: F811
    from tledge.preprocess import preprocess_batch

    images = _test_images(tiny_run)
    pixels = export_run(tiny_run, "onnx", tmp_path / "px", input="pixels", pack_images=0)
    assert {p["format"]: p["outcome"] for p in pixels.parity} == {"onnx": "within", "onnx-pixels": "within"}
    path = pixels["onnx-pixels"]
    assert path.name == "model.pixels.onnx"
    raw = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
    logits = _ort(path).run(None, {"input": raw})[0]
    want = _ort(pixels["onnx"]).run(None, {"input": preprocess_batch(images, card_from_onnx(pixels["onnx"]))})[0]
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    ds = read_key_file(pixels.out_dir / "deepstream" / "config_infer_model_pixels.txt")["property"]
    assert (ds.getfloat("net-scale-factor"), "offsets" in ds, ds["onnx-file"]) == (1.0, False, "../model.pixels.onnx")
    assert ds["output-blob-names"] == "logits"
    assert f"nvinfer config-file-path={pixels.out_dir / 'deepstream' / 'config_infer_model_pixels.txt'}   # DeepStream" \
        in pixels.next_commands
    probs = export_run(tiny_run, "onnx", tmp_path / "probs", output="probs", parity=False)
    assert probs["onnx-probs"].name == "model.probs.onnx"
    jetson = ("imagenet --model=model.probs.onnx --labels=labels.txt --input-blob=input --output-blob=probs "
              "INPUT_IMAGE_OR_CAMERA OUTPUT")
    assert f"cd {probs.out_dir} && {jetson}   # jetson-inference" in probs.next_commands
    assert jetson in (probs.out_dir / "DEPLOY.md").read_text()
    ds = read_key_file(probs.out_dir / "deepstream" / "config_infer_model_probs.txt")["property"]
    assert (ds["output-blob-names"], ds.getfloat("classifier-threshold")) == ("probs", 0.0)
    nchw = export_run(tiny_run, "onnx", tmp_path / "nchw", input="uint8-nchw", parity=False)
    session = _ort(nchw["onnx-uint8-nchw"])
    assert (session.get_inputs()[0].type, session.get_inputs()[0].shape[1:]) == ("tensor(uint8)", [3, SIZE, SIZE])
    got = session.run(None, {"input": np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--input", "rgb"], "'rgb' is not one of 'float', 'uint8', 'uint8-nchw', 'pixels'"),
    (["--output", "softmax"], "'softmax' is not one of 'logits', 'probs'"),
])
def test_bad_input_option_exit_2_before_any_file(argv, message, tiny_run, tmp_path, capsys):  # noqa: F811
    from tledge.cli import main
    from tledge.errors import TledgeError

    out = tmp_path / "never"
    assert main(["export", str(tiny_run), "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(TledgeError, match="--input 'rgb': must be one of float, uint8, uint8-nchw, pixels"):
        export_run(tiny_run, "onnx", out, input="rgb")  # the Python door: same check
    assert not out.exists()


# ------------------------------------------------------------------------------------------ part 3
@pytest.fixture(scope="module")
def run_export(tiny_run):  # noqa: F811
    """The default formats in RUN/export/ (where eval finds the run's test split)."""
    return export_run(tiny_run, "onnx,int8", tolerance="int8=100", pack_images=0)


def _argmax_accuracy(path: Path, paths, labels) -> float:
    from tledge.preprocess import load_batch
    from tledge.runtime.backends import load_backend

    with load_backend(path, device="cpu") as backend:
        batch, kept = load_batch(paths, backend.card)
        preds = backend.predict(batch).argmax(1)
    return float(np.mean(preds == np.asarray(labels)[kept]))


def test_eval_int8_onnx_on_the_runs_test_split(run_export, tiny_run, log_lines):  # noqa: F811
    import json

    import tledge
    from tledge.splits import Splits

    artifact = tiny_run / "export" / "model.int8.onnx"
    assert run_export["int8"] == artifact
    lines = log_lines
    report = tledge.evaluate(artifact, device="cpu")
    out = tiny_run / "eval" / "model.int8.onnx"
    assert sorted(p.name for p in out.iterdir()) == ["confusion_matrix.csv", "confusion_matrix.png", "metrics.json",
                                                     "metrics.md", "samples.png"]
    saved = json.loads((out / "metrics.json").read_text())
    splits = Splits.load(tiny_run)
    want = _argmax_accuracy(artifact, splits.paths("test"), splits.labels("test"))
    assert saved["num_samples"] == 24 == sum(sum(row) for row in saved["confusion_matrix"])
    assert saved["accuracy"] == pytest.approx(want) == report["accuracy"]
    assert (saved["artifact"], saved["data"], saved["backend"]) == ("model.int8.onnx", "test split",
                                                                   "onnxruntime-cpu-int8")
    assert list(saved["per_class"]) == CLASSES
    csv = (out / "confusion_matrix.csv").read_text().splitlines()
    assert csv[0] == "true\\predicted,red,green,blue" and len(csv) == 4
    assert (out / "metrics.md").read_text().rstrip().endswith(f"**accuracy**: {saved['accuracy']:.3f} on 24 samples")
    assert lines[0] == f"eval: model.int8.onnx (onnxruntime-cpu-int8) on 24 images from test split of {tiny_run}"
    assert lines[-1] == f"eval results in {out}"


def test_eval_onnx_on_a_foreign_folder_without_torch(run_export, tiny_run, tmp_path):  # noqa: F811
    """`tledge eval model.onnx DATA` in a Python where torch cannot be imported; results beside the run."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from tledge.splits import Splits

    splits = Splits.load(tiny_run)
    data = tmp_path / "photos"
    for path, label in zip(splits.paths("test")[::2], splits.labels("test")[::2]):  # 4 per class
        (data / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / CLASSES[label] / path.name)
    (data / "blue" / "broken.png").write_bytes(b"not a png")
    artifact = tiny_run / "export" / "model.onnx"
    code = ("import sys; sys.modules['torch'] = None\n"
            "from tledge.cli import main\n"
            f"code = main(['eval', {str(artifact)!r}, {str(data)!r}])\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tiny_run / "eval-photos" / "model.onnx"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_samples"] == 12 and saved["data"] == str(data)
    assert saved["accuracy"] == pytest.approx(_argmax_accuracy(artifact, splits.paths("test")[::2],
                                                                splits.labels("test")[::2]))
    assert [v["support"] for v in saved["per_class"].values()] == [4, 4, 4]
    assert saved["skipped"] == [] and saved["backend"] == "onnxruntime-cpu-fp32"
    assert "warning: skipped blue/broken.png" in proc.stderr
    assert f"eval results in {out}" in proc.stdout


def test_eval_uint8_artifact_matches_plain_onnx(uint8_probs, tiny_run):  # noqa: F811
    import tledge

    from tledge.splits import Splits

    splits = Splits.load(tiny_run)
    out = uint8_probs.out_dir
    a = tledge.evaluate(out / "model.uint8.probs.onnx", splits.root + "/test", device="cpu")
    b = tledge.evaluate(out / "model.onnx", splits.root + "/test", device="cpu")
    assert a["num_samples"] == b["num_samples"] == 24
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    assert (out / "eval-test" / "model.uint8.probs.onnx" / "metrics.json").is_file()  # not in a run: beside it


def test_eval_artifact_errors_are_one_line_exit_2(tmp_path, uint8_probs, capsys):
    from tledge.cli import main

    loose = uint8_probs.out_dir / "model.onnx"  # not in a run: no test split
    assert main(["eval", str(loose)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {loose} is not in a run's export folder (RUN/export/), so there is no test split to "
                   f"evaluate on; pass a labelled folder: tledge eval {loose} DATA"]
    assert main(["eval", str(loose), str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: data folder not found: {tmp_path / 'nope'}"]
    assert main(["eval", str(tmp_path / "gone.onnx")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: no such file: {tmp_path / 'gone.onnx'}"]


def test_eval_engine_on_the_runs_test_split_with_the_tensorrt_stand_in(tiny_run, tmp_path, monkeypatch):  # noqa: F811
    """The .engine path of `tledge eval` (backend choice, sidecar card, batching up to the profile's max),
    against the call-recording TensorRT stand-in (tests/fake_tensorrt_runtime.py, NOT TensorRT): its "engine"
    computes logits = per-channel mean @ WEIGHTS, so the expected accuracy is computable with numpy."""
    import json

    import fake_tensorrt_runtime as fake_trt
    import tledge
    from tledge.card import engine_sidecar_path
    from tledge.preprocess import load_batch
    from tledge.splits import Splits

    fake_trt.install(monkeypatch)
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    splits = Splits.load(tiny_run)
    splits.save(run)
    engine = run / "export" / "model.fp16.engine"
    engine.write_bytes(fake_trt.engine_bytes((8, 3, SIZE, SIZE), 3))
    facts = {"version": "10.3.0", "gpu_name": "Fake Orin", "compute_capability": "8.7", "precision": "fp16",
             "profile": {"min": [1, 3, SIZE, SIZE], "opt": [1, 3, SIZE, SIZE], "max": [8, 3, SIZE, SIZE]}}
    engine_sidecar_path(engine).write_text(json.dumps(_card().replace(precision="fp16",
                                                                      extra={"tensorrt": facts}).to_dict()))
    report = tledge.evaluate(engine)
    batch, kept = load_batch(splits.paths("test"), _card())
    want = np.mean(fake_trt.expected_logits(batch, 3).argmax(1) == np.asarray(splits.labels("test"))[kept])
    saved = json.loads((run / "eval" / "model.fp16.engine" / "metrics.json").read_text())
    assert saved["num_samples"] == 24 and saved["backend"] == "tensorrt-fp16"
    assert saved["accuracy"] == pytest.approx(want) == report["accuracy"]
    shapes = [c[2] for c in fake_trt.CALLS if c[0] == "set_input_shape"]
    assert (8, 3, SIZE, SIZE) in shapes and max(s[0] for s in shapes) == 8  # batches capped at the profile max
