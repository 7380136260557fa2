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

from tests.test_export import CLASSES, SIZE, tiny_run  # noqa: F401 - the shared module-scoped fixture
from tledge.card import card_from_onnx
from tledge.export.pipeline import export_run

TRITON_DESCRIPTOR = Path(__file__).parent / "data" / "triton_model_config.desc"


@pytest.fixture(scope="module")
def deployed(tiny_run, tmp_path_factory):  # noqa: F811
    """The default formats (onnx, int8 with both flavours) in one export folder."""
    out = tmp_path_factory.mktemp("deployed")
    return export_run(tiny_run, "onnx,int8", out, int8_flavours="both", tolerance="int8=100", pack_images=0,
                      echo=lambda m: None)


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
    assert f"cd {out} && {command}   # jetson-inference" in deployed.next_commands
    assert f"tritonserver --model-repository={out / 'triton'}   # see {out / 'DEPLOY.md'}" in deployed.next_commands


def test_triton_fixed_batch_has_max_batch_0_and_full_dims(tiny_run, tmp_path):  # noqa: F811
    result = export_run(tiny_run, "onnx", tmp_path / "fixed", batch=4, parity=False, echo=lambda m: None)
    config = text_format.Parse((result.out_dir / "triton" / "mobilenet_v2" / "config.pbtxt").read_text(),
                               triton_model_config()())
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, 3, SIZE, SIZE]
    assert list(config.output[0].dims) == [4, 3]
    ds = read_key_file(result.out_dir / "deepstream" / "config_infer_model.txt")["property"]
    assert ds.getint("batch-size") == 4
    assert ds["model-engine-file"] == "../model.onnx_b4_gpu0_fp32.engine"
