"""Preprocessing inside the graph (`tledge export RUN --input uint8|uint8-nchw|pixels`, `--output probs`).

From the FP32 model.onnx, a second ONNX whose input is what cameras and decoders give (no float math left to
the consumer):
- `uint8`: uint8 RGB NHWC [N, H, W, 3] (Triton, tledge's runtime, any app holding an RGB frame);
- `uint8-nchw`: uint8 RGB NCHW [N, 3, H, W];
- `pixels`: float32 RGB NCHW with 0-255 values (DeepStream's nvinfer feeds float planar data; with this model
  its config is exact: net-scale-factor=1, no offsets);
then Cast → (Transpose) → Mul by 1/(255·std[c]) → Add −mean[c]/std[c], the card's per-channel values, into the
original graph. `--output probs` appends Softmax over the classes (output `probs`). The resize stays outside
(fixed H×W input): the card's resize policy is the consumer's. The card records the input format, so
tledge's runtime feeds such a model uint8 (or raw pixels) and skips its own normalization.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tledge.atomic import atomic_write_with
from tledge.card import embed_in_onnx
from tledge.errors import TledgeError

INPUT_FORMATS = ("float", "uint8", "uint8-nchw", "pixels")
OUTPUT_KINDS = ("logits", "probs")
NORMALIZED = "input_normalized"


def artifact_name(input_format: str, output: str) -> str | None:
    """model.uint8.onnx, model.pixels.probs.onnx, model.probs.onnx; None for the plain model.onnx."""
    parts = ([] if input_format == "float" else [input_format]) + (["probs"] if output == "probs" else [])
    return f"model.{'.'.join(parts)}.onnx" if parts else None


def input_facts(input_format: str, output: str) -> dict:
    """What the card records about the model's input and output (card.extra["input"])."""
    dtype = "uint8" if input_format.startswith("uint8") else "float32"
    layout = "NHWC" if input_format == "uint8" else "NCHW"
    scale = "0-255, normalized in the graph" if input_format != "float" else "normalized by the consumer"
    return {"format": input_format, "dtype": dtype, "layout": layout, "values": scale, "output": output}


def add_preprocessing(src: str | Path, dst: str | Path, input_format: str, output: str = "logits") -> Path:
    """Write `dst`: the tledge ONNX `src` with `input_format` input and `output` (see module doc), its card
    (read from `src`) recording both; returns dst."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tledge.card import card_from_onnx

    card = card_from_onnx(src)

    if input_format not in INPUT_FORMATS or output not in OUTPUT_KINDS:
        raise TledgeError(f"--input {input_format} --output {output}: choose --input from {', '.join(INPUT_FORMATS)} "
                          f"and --output from {', '.join(OUTPUT_KINDS)}")
    model = onnx.load(str(src))
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    (old_input,) = [i for i in graph.input if i.name not in initializers]
    name = old_input.name
    batch_dim = old_input.type.tensor_type.shape.dim[0]
    height, width = card.input_size
    for node in graph.node:  # the original first layers now read the normalized tensor
        node.input[:] = [NORMALIZED if value == name else value for value in node.input]
    nodes, inits = [], []
    current = name
    if input_format != "float":
        std = np.asarray(card.std, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, 3, 1, 1)
        bias = (-np.asarray(card.mean, dtype=np.float64) / std).astype(np.float32).reshape(1, 3, 1, 1)
        inits += [numpy_helper.from_array(scale, "tledge_scale"), numpy_helper.from_array(bias, "tledge_bias")]
        if input_format.startswith("uint8"):
            nodes.append(helper.make_node("Cast", [current], ["input_float"], to=TensorProto.FLOAT, name="tledge_cast"))
            current = "input_float"
        if input_format == "uint8":
            nodes.append(helper.make_node("Transpose", [current], ["input_nchw"], perm=[0, 3, 1, 2],
                                          name="tledge_to_nchw"))
            current = "input_nchw"
        nodes.append(helper.make_node("Mul", [current, "tledge_scale"], ["input_scaled"], name="tledge_scale"))
        nodes.append(helper.make_node("Add", ["input_scaled", "tledge_bias"], [NORMALIZED], name="tledge_normalize"))
    else:
        nodes.append(helper.make_node("Identity", [current], [NORMALIZED], name="tledge_input"))
    dtype = TensorProto.UINT8 if input_format.startswith("uint8") else TensorProto.FLOAT
    dims = [height, width, 3] if input_format == "uint8" else [3, height, width]
    new_input = helper.make_tensor_value_info(name, dtype, [None] + dims)
    new_input.type.tensor_type.shape.dim[0].CopyFrom(batch_dim)
    graph.input.remove(old_input)
    graph.input.insert(0, new_input)
    graph.initializer.extend(inits)
    kept = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + kept)
    output_name = graph.output[0].name
    if output == "probs":
        old_output = graph.output[0]
        graph.node.append(helper.make_node("Softmax", [old_output.name], ["probs"], axis=1, name="tledge_softmax"))
        new_output = onnx.ValueInfoProto()
        new_output.CopyFrom(old_output)
        new_output.name = "probs"
        graph.output.remove(old_output)
        graph.output.insert(0, new_output)
        output_name = "probs"
    facts = input_facts(input_format, output)
    new_card = card.replace(layout=facts["layout"], input_name=name, output_name=output_name,
                            extra={**card.extra, "input": facts})
    embed_in_onnx(model, new_card)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise TledgeError(f"the preprocessing graph does not pass onnx.checker ({str(exc).splitlines()[0][:200]})") from None
    dst = Path(dst)
    atomic_write_with(dst, lambda tmp: onnx.save(model, str(tmp)))
    return dst


def filename(options) -> str | None:
    """--input/--output: the extra ONNX's name (None: not asked for)."""
    return artifact_name(options.input, options.output)


def row_name(options) -> str:
    """Its row in the export table and parity.json: onnx-uint8, onnx-pixels.probs, onnx-probs."""
    return "onnx-" + filename(options)[len("model."):-len(".onnx")]


def build(ctx, inputs, target: Path) -> Path:
    """model.onnx with the preprocessing (and softmax) inside the graph."""
    return add_preprocessing(inputs["onnx"], target, ctx.options.input, ctx.options.output)
