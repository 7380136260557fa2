"""PyTorch → ONNX FP32: input `input` float32 [N,3,H,W], output `logits`, the model card in metadata_props.

Exporter choice (torch 2.14): `torch.onnx.export` defaults to the dynamo exporter, which writes opset 18
and cannot convert MobileNetV2 down to 17 (~10 s); the TorchScript exporter (`dynamo=False`, deprecated
but present) writes opset ≤ 17 in well under a second. tledge's default opset is 17, the one the widest
range of TensorRT versions accepts (JetPack 5/6: TensorRT 8.5, 8.6, 10.3), so the default goes through
the TorchScript exporter; `opset >= 18` goes through dynamo; `exporter=` forces one (an impossible pair,
dynamo below 18, is an error rather than a silent change).

Simplification: onnxslim. It is a pure-Python wheel (no native build on a Jetson), actively maintained,
and handles opset 18 graphs from the dynamo exporter; onnxsim needs a C++ build on aarch64 and lags on new
opsets. Because a simplifier rewrites the graph, the result is checked numerically against PyTorch on a
seeded input; if it drifts, the unsimplified graph is kept and the card says so.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from tledge.atomic import atomic_write_with
from tledge.card import ModelCard, embed_in_onnx
from tledge.errors import ExportOptionError, TledgeError, require

DEFAULT_OPSET = 17
DYNAMO_MIN_OPSET = 18
EXPORTERS = ("torchscript", "dynamo")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
SIMPLIFY_REL_TOL = 1e-4  # relative to the logit scale, like the onnx parity gate


def choose_exporter(opset: int, exporter: str | None = None) -> str:
    """"torchscript" for opset ≤ 17, "dynamo" for 18+, unless forced; dynamo below 18 is refused."""
    if exporter is None:
        return "dynamo" if opset >= DYNAMO_MIN_OPSET else "torchscript"
    exporter = exporter.lower()
    if exporter not in EXPORTERS:
        raise ExportOptionError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise ExportOptionError(
            f"the dynamo exporter writes opset {DYNAMO_MIN_OPSET}+ (it cannot convert these models to {opset}); "
            f"use --opset {DYNAMO_MIN_OPSET} or --exporter torchscript"
        )
    return exporter


def export_onnx(model, card: ModelCard, path: str | Path, opset: int = DEFAULT_OPSET, batch: int | None = None,
                dynamo: bool | None = None, simplify: bool = True) -> Path:
    """Write `model` (eval mode) as ONNX with the card embedded; returns the path.

    batch: None → dynamic N; an int → fixed N. dynamo: None → chosen by opset; True/False forces it.
    """
    torch = require("torch", "export", "exporting to ONNX")
    onnx = require("onnx", "export", "exporting to ONNX")
    exporter = choose_exporter(opset, None if dynamo is None else ("dynamo" if dynamo else "torchscript"))
    if batch is not None and batch < 1:
        raise ExportOptionError(f"--batch must be at least 1, got {batch}")
    path = Path(path)
    model = model.eval()
    height, width = card.input_size
    example = torch.zeros(batch or 2, 3, height, width)  # 2, not 1: a size-1 dim can get specialised away

    started = time.perf_counter()
    proto = _run_exporter(torch, onnx, model, example, opset, exporter, dynamic=batch is None)
    _check_io(proto)
    simplified = False
    if simplify:
        candidate = _simplify(proto)
        if candidate is not None and _matches_torch(candidate, model, card, torch):
            proto, simplified = candidate, True
    opset_written = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    onnx_facts = {"opset": int(opset_written), "exporter": exporter, "dynamic_batch": batch is None,
                  "batch": batch, "simplified": simplified, "simplifier": "onnxslim" if simplified else None,
                  "export_seconds": round(time.perf_counter() - started, 3)}
    card = card.replace(precision="fp32", extra={**card.extra, "onnx": onnx_facts})
    embed_in_onnx(proto, card)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker errors are ValidationError / InferenceError
        raise TledgeError(f"the exported ONNX graph does not pass onnx.checker ({str(exc).splitlines()[0][:200]})") from None
    atomic_write_with(path, lambda tmp: onnx.save(proto, str(tmp)))
    return path


def _run_exporter(torch, onnx, model, example, opset: int, exporter: str, dynamic: bool):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tledge-onnx-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, and we know
        warnings.simplefilter("ignore", UserWarning)
        out = Path(tmp) / "raw.onnx"
        try:
            if exporter == "dynamo":
                shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic else None
                program = torch.onnx.export(model, (example,), None, dynamo=True, opset_version=opset,
                                            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                            dynamic_shapes=shapes, verbose=False)
                program.save(str(out))
            else:
                axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
                with torch.no_grad():
                    torch.onnx.export(model, (example,), str(out), dynamo=False, opset_version=opset,
                                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                                      do_constant_folding=True)
        except TledgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - exporter failures are long; the first line says what broke
            first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
            raise TledgeError(f"ONNX export with the {exporter} exporter at opset {opset} failed: {first}") from None
        return onnx.load(str(out), load_external_data=True)


def _check_io(proto) -> None:
    inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise TledgeError(f"exported graph has inputs {inputs} and outputs {outputs}; expected ['input'] and ['logits']")


def _simplify(proto):
    """onnxslim's constant folding and fusion, or None when it fails (then the raw export is kept)."""
    try:
        import onnxslim
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(proto)
    except Exception:  # noqa: BLE001 - a simplifier failure is not an export failure
        return None
    return slim if slim is not None and len(slim.graph.node) > 0 else None


def _matches_torch(proto, model, card: ModelCard, torch) -> bool:
    """Same logits as PyTorch on a seeded batch, within SIMPLIFY_REL_TOL of the logit scale."""
    import onnxruntime as ort

    shape = proto.graph.input[0].type.tensor_type.shape.dim[0]
    batch = shape.dim_value if shape.dim_value > 0 else 2
    height, width = card.input_size
    x = np.random.default_rng(0).standard_normal((batch, 3, height, width)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: x})[0]
    except Exception:  # noqa: BLE001 - an unloadable simplified graph is just not used
        return False
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    scale = max(float(np.abs(want).max()), 1e-12)
    return got.shape == want.shape and float(np.abs(got - want).max()) / scale <= SIMPLIFY_REL_TOL


def build(ctx, inputs, target: Path) -> Path:
    """The onnx format: the FP32 model with its card (every other format is made from this file)."""
    return export_onnx(ctx.model, ctx.card, target, opset=ctx.opset, batch=ctx.onnx_batch,
                       dynamo=ctx.exporter == "dynamo")
