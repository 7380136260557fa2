"""Deployment files beside the artifacts, in the forms other stacks read: nothing to type by hand.

Written by every export, after the artifacts exist, from each ONNX file's own graph (input/output names,
shapes, data types) and its model card (classes, size, mean/std):
- `labels.txt`: one class per line, in the card's order (jetson-inference, Triton, most tools);
- `deepstream/config_infer_<artifact>.txt`: a Gst-nvinfer classifier config (GLib key file, [property]
  group) per ONNX that TensorRT can build: model.onnx (FP32), model.int8.trt.onnx (explicit Q/DQ INT8) and
  an in-graph-normalization `--input pixels` model; with `deepstream/labels.txt` (nvinfer's classifier
  label file: one line per output layer, classes separated by ';');
- `triton/<name>/config.pbtxt` + `triton/<name>/1/model.onnx` (a hard link or copy) + labels: a Triton
  model repository entry (onnxruntime_onnx) for model.onnx and for a uint8-input model;
- `DEPLOY.md`: the jetson-inference `imagenet` command line, the DeepStream and Triton commands, and what
  each stack does differently from tledge's own preprocessing.

nvinfer computes y = net-scale-factor × (x − offsets[c]) on 0-255 pixels: ONE scale for all channels, so
per-channel std (ImageNet's 0.229/0.224/0.225) cannot be written exactly; the config then uses the mean
std and says so. A model exported with `--input pixels` (float 0-255 NCHW, normalization inside the graph)
needs net-scale-factor=1 and no offsets, and is exact. nvinfer always feeds float planar data, so uint8
models are for Triton and tledge's runtime, not nvinfer.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tledge.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard
from tledge.errors import TledgeError

LABELS_FILE = "labels.txt"
DEPLOY_README = "DEPLOY.md"
DEEPSTREAM_DIR = "deepstream"
TRITON_DIR = "triton"
TRITON_MAX_BATCH = 16  # dynamic-batch ONNX: the largest batch Triton may form (tledge's TensorRT default too)
# ONNX TensorProto element types → Triton data types (model_config.proto DataType)
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 10: "TYPE_FP16", 6: "TYPE_INT32", 7: "TYPE_INT64"}
NVINFER_MODES = {"fp32": 0, "int8": 1, "fp16": 2}  # network-mode


@dataclass(frozen=True)
class GraphIO:
    """An ONNX file's single input and first output as the deployment tools see them."""

    input_name: str
    input_type: int  # onnx.TensorProto element type
    input_shape: tuple  # with None for a dynamic dimension
    output_name: str
    output_type: int
    output_shape: tuple

    @property
    def dynamic_batch(self) -> bool:
        return self.input_shape[0] is None

    @property
    def nhwc(self) -> bool:
        return len(self.input_shape) == 4 and self.input_shape[3] == 3 and self.input_shape[1] != 3


def graph_io(path: str | Path) -> GraphIO:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        raise TledgeError(f"{path}: expected one input and an output, found {len(inputs)} input(s)")

    def shape(value) -> tuple:
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)

    out = model.graph.output[0]
    return GraphIO(inputs[0].name, inputs[0].type.tensor_type.elem_type, shape(inputs[0]),
                   out.name, out.type.tensor_type.elem_type, shape(out))


def input_format(card: ModelCard) -> str:
    return card.input_format


def output_kind(card: ModelCard) -> str:
    return card.output_kind


def _precision(path: Path, card: ModelCard) -> str:
    facts = (card.extra or {}).get("int8")
    return "int8" if isinstance(facts, dict) or card.precision.startswith("int8") else "fp32"


def deepstream_ok(path: Path, card: ModelCard) -> bool:
    """TensorRT-buildable and fed float NCHW: FP32 ONNX, the symmetric INT8 (Q/DQ) ONNX, the pixels model."""
    facts = (card.extra or {}).get("int8")
    if isinstance(facts, dict) and facts.get("role") != "tensorrt":
        return False  # the CPU INT8 flavour (U8 activations): TensorRT's parser refuses it
    return input_format(card) in ("float", "pixels")


def triton_ok(path: Path, card: ModelCard) -> bool:
    """One entry for the FP32 model and one per uint8/pixels model (the INT8 files stay CPU/TensorRT files)."""
    return not isinstance((card.extra or {}).get("int8"), dict)


# ------------------------------------------------------------------------------------------------ writers
def write_deploy_files(out_dir: str | Path, artifacts: Sequence[str | Path], card: ModelCard,
                       max_batch: int | None = None) -> list[Path]:
    """Write labels.txt, the DeepStream configs, the Triton entries and DEPLOY.md for the ONNX `artifacts`
    (others are ignored); returns the files written. `card`: the checkpoint's (class order, size)."""
    from tledge.card import card_from_onnx

    out = Path(out_dir)
    onnx_files = [Path(p) for p in artifacts if Path(p).suffix == ".onnx"]
    written = [_write(out / LABELS_FILE, "".join(f"{name}\n" for name in card.class_names))]
    deepstream, triton = [], []
    for path in onnx_files:
        art_card, io = card_from_onnx(path), graph_io(path)
        if art_card.class_names != card.class_names:
            raise TledgeError(f"{path}: its card's classes differ from the checkpoint's; re-export it")
        if deepstream_ok(path, art_card):
            deepstream.append(path)
            written.append(_write(out / DEEPSTREAM_DIR / f"config_infer_{_stem(path)}.txt",
                                  nvinfer_config(path, art_card, io)))
        if triton_ok(path, art_card):
            name = triton_name(path, art_card)
            triton.append(name)
            folder = out / TRITON_DIR / name
            written.append(_write(folder / "config.pbtxt", triton_config(name, art_card, io, max_batch)))
            written.append(_write(folder / LABELS_FILE, "".join(f"{c}\n" for c in card.class_names)))
            written.append(_link_or_copy(path, folder / "1" / "model.onnx"))
    if deepstream:
        written.append(_write(out / DEEPSTREAM_DIR / LABELS_FILE, ";".join(card.class_names) + "\n"))
    written.append(_write(out / DEPLOY_README, deploy_readme(out, card, jetson_model(onnx_files), deepstream, triton)))
    return written


def _write(path: Path, text: str) -> Path:
    from tledge.card import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def _link_or_copy(src: Path, dst: Path) -> Path:
    """A hard link where the file system allows it (no second copy of the weights), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _stem(path: Path) -> str:
    return path.name[: -len(".onnx")].replace(".", "_")


def triton_name(path: Path, card: ModelCard) -> str:
    """Triton model name (= its folder): the arch, plus the file's qualifier (model.uint8.onnx → _uint8)."""
    qualifier = _stem(path)[len("model"):] if _stem(path).startswith("model") else "_" + _stem(path)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", card.arch + qualifier)


def nvinfer_scale(card: ModelCard, fmt: str) -> tuple[float, tuple[float, float, float], float]:
    """(net-scale-factor, offsets, worst relative scale error per channel) for nvinfer's y = s·(x − o[c])."""
    if fmt == "pixels":
        return 1.0, (0.0, 0.0, 0.0), 0.0
    offsets = tuple(round(255.0 * m, 4) for m in card.mean)
    std = sum(card.std) / 3.0
    scale = 1.0 / (255.0 * std)
    error = max(abs(std / s - 1.0) for s in card.std)
    return scale, offsets, error


def nvinfer_config(path: Path, card: ModelCard, io: GraphIO, gpu_id: int = 0) -> str:
    """A Gst-nvinfer classifier config for ONNX `path` (paths relative to the config file, as nvinfer reads
    them)."""
    fmt = input_format(card)
    precision = _precision(path, card)
    mode = NVINFER_MODES[precision]
    batch = 1 if io.dynamic_batch else int(io.input_shape[0])
    _, channels, height, width = io.input_shape
    scale, offsets, error = nvinfer_scale(card, fmt)
    engine = f"../{path.name}_b{batch}_gpu{gpu_id}_{precision}.engine"  # the name nvinfer gives the engine it builds
    lines = [f"# Gst-nvinfer classifier config for {path.name}, written by tledge export.",
             "# Use: nvinfer config-file-path=<this file> (primary: process-mode=1, whole frames), or "
             "process-mode=2 with operate-on-gie-id for a secondary classifier on detected objects.",
             f"# Classes ({card.num_classes}) in ../labels.txt order; deepstream/labels.txt is the same list on one "
             "line, as nvinfer's classifier label file wants it."]
    if fmt == "pixels":
        lines.append("# This model normalizes inside its graph: it takes 0-255 RGB pixels, so net-scale-factor=1 "
                     "and no offsets; the per-channel mean/std are exact.")
    elif error > 1e-6:
        lines += [f"# APPROXIMATE normalization: nvinfer has ONE net-scale-factor for all channels, so the card's "
                  f"per-channel std {list(card.std)} is replaced by their mean {sum(card.std) / 3:.4f} "
                  f"(up to {100 * error:.1f}% off per channel; predictions can differ from tledge's).",
                  "# Exact alternative: `tledge export RUN --input pixels` writes model.pixels.onnx with the "
                  "normalization inside the graph, and a config for it (net-scale-factor=1)."]
    if output_kind(card) == "logits":
        lines.append("# The output is logits: nvinfer reports the largest output above classifier-threshold as "
                     "the label's confidence; export with --output probs for probabilities.")
    if precision == "int8":
        lines.append("# INT8 with explicit Q/DQ nodes: the scales are in the graph, no calibration file is needed.")
    else:
        lines.append("# network-mode=0 builds FP32; 2 builds FP16 (faster on Jetson; tledge's model.fp16.engine "
                     "parity was checked with tledge's own build).")
    props = {
        "gpu-id": gpu_id,
        "net-scale-factor": f"{scale:.10g}",
        **({} if fmt == "pixels" else {"offsets": ";".join(f"{o:g}" for o in offsets)}),
        "model-color-format": 0,
        "onnx-file": f"../{path.name}",
        "model-engine-file": engine,
        "labelfile-path": LABELS_FILE,
        "batch-size": batch,
        "network-mode": mode,
        "network-type": 1,
        "process-mode": 1,
        "gie-unique-id": 1,
        "infer-dims": f"{channels};{height};{width}",
        "network-input-order": 0,
        "maintain-aspect-ratio": 0,
        "output-blob-names": io.output_name,
        "classifier-threshold": 0.0,  # every object gets its top class; raise it (probs) to drop unsure ones
        "classifier-async-mode": 0,
    }
    if card.resize != "stretch":
        lines.append(f"# The card's resize is {card.resize}; nvinfer stretches the whole frame/object to "
                     f"{width}x{height} (maintain-aspect-ratio=0), as tledge's 'stretch' does.")
    return "\n".join(lines) + "\n[property]\n" + "".join(f"{k}={v}\n" for k, v in props.items())


def triton_config(name: str, card: ModelCard, io: GraphIO, max_batch: int | None = None) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for an onnxruntime_onnx model."""
    batch = (max_batch or TRITON_MAX_BATCH) if io.dynamic_batch else 0
    in_dims = list(io.input_shape[1:]) if batch else list(io.input_shape)
    out_dims = list(io.output_shape[1:]) if batch else list(io.output_shape)
    if out_dims[-1] is None:
        out_dims[-1] = card.num_classes
    layout = "FORMAT_NHWC" if io.nhwc else "FORMAT_NCHW"
    text = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {batch}",
            "input [", "  {", f'    name: "{io.input_name}"', f"    data_type: {TRITON_TYPES[io.input_type]}",
            f"    format: {layout}", f"    dims: [ {', '.join(str(d) for d in in_dims)} ]", "  }", "]",
            "output [", "  {", f'    name: "{io.output_name}"', f"    data_type: {TRITON_TYPES[io.output_type]}",
            f"    dims: [ {', '.join(str(d) for d in out_dims)} ]", f'    label_filename: "{LABELS_FILE}"', "  }", "]"]
    if batch:
        text += ["dynamic_batching { }"]
    text += ['parameters {', '  key: "tledge.input_format"', f'  value: {{ string_value: "{input_format(card)}" }}', "}"]
    return "\n".join(text) + "\n"


def jetson_model(onnx_files: Sequence[Path]) -> Path | None:
    """The file for jetson-inference's imagenet, which feeds ImageNet-normalized float NCHW and reads the raw
    output: model.probs.onnx (softmax in the graph) where exported, else model.onnx."""
    by_name = {p.name: p for p in onnx_files}
    return by_name.get("model.probs.onnx") or by_name.get("model.onnx")


def jetson_inference_command(path: Path, card: ModelCard, io: GraphIO) -> str:
    return (f"imagenet --model={path.name} --labels={LABELS_FILE} --input-blob={io.input_name} "
            f"--output-blob={io.output_name} INPUT_IMAGE_OR_CAMERA OUTPUT")


def deploy_readme(out: Path, card: ModelCard, onnx_path: Path | None, deepstream: Sequence[Path],
                  triton: Sequence[str]) -> str:
    lines = [f"# Deploying these artifacts ({card.arch}, {card.num_classes} classes, "
             f"{card.input_size[1]}x{card.input_size[0]} RGB)", "",
             f"`{LABELS_FILE}`: the classes, one per line, in the model's output order.", ""]
    if onnx_path is not None:
        io = graph_io(onnx_path)
        lines += ["## jetson-inference", "", "From this folder:", "", "```",
                  jetson_inference_command(onnx_path, card, io), "```", ""]
        imagenet = tuple(round(v, 3) for v in card.mean) == IMAGENET_MEAN and \
            tuple(round(v, 3) for v in card.std) == IMAGENET_STD
        lines.append("imagenet normalizes ONNX inputs with the ImageNet mean/std and stretches frames to the input "
                     "size: " + ("the same as this model's card." if imagenet and card.resize == "stretch" else
                                 f"this model's card differs (mean {list(card.mean)}, std {list(card.std)}, resize "
                                 f"{card.resize}): expect different predictions."))
        if card.output_kind == "logits" and io.output_name == "logits":
            lines += ["imagenet reads the raw output: it keeps classes whose value is at least `--threshold` "
                      "(default 0.01) and above 0, so with logits an image whose largest logit is ≤ 0 gets no "
                      "class, and the 'confidence' is a logit. `tledge export RUN --output probs` adds "
                      "model.probs.onnx (softmax in the graph), which this command then uses.", ""]
        else:
            lines += ["The output is softmax probabilities: imagenet's confidence and `--threshold` mean what they "
                      "say.", ""]
    if deepstream:
        lines += ["## DeepStream (Gst-nvinfer)", ""]
        lines += [f"- `{DEEPSTREAM_DIR}/config_infer_{_stem(p)}.txt` for `{p.name}`" for p in deepstream]
        lines += ["", "```", f"gst-launch-1.0 ... ! nvstreammux ... ! nvinfer config-file-path="
                  f"{DEEPSTREAM_DIR}/config_infer_{_stem(deepstream[0])}.txt ! ...", "```",
                  "Each config's comments say whether its normalization is exact.", ""]
    if triton:
        lines += ["## Triton Inference Server", "", "```", f"tritonserver --model-repository={TRITON_DIR}", "```",
                  "Models: " + ", ".join(f"`{n}`" for n in triton) + f" (see `{TRITON_DIR}/<name>/config.pbtxt`).",
                  ""]
    return "\n".join(lines)


def deploy_commands(out: str | Path, card: ModelCard) -> list[str]:
    """The "next:" lines of an export for the other stacks (what DEPLOY.md explains)."""
    out = Path(out)
    lines = []
    model = jetson_model([p for p in (out / "model.probs.onnx", out / "model.onnx") if p.is_file()])
    if model is not None:
        lines.append(f"cd {out} && " + jetson_inference_command(model, card, graph_io(model)) + "   # jetson-inference")
    configs = sorted((out / DEEPSTREAM_DIR).glob("config_infer_*.txt"), key=lambda p: ("pixels" not in p.name, p.name))
    if configs:  # the exact one (normalization in the graph) first
        lines.append(f"nvinfer config-file-path={configs[0]}   # DeepStream")
    if (out / TRITON_DIR).is_dir():
        lines.append(f"tritonserver --model-repository={out / TRITON_DIR}   # see {out / DEPLOY_README}")
    return lines
