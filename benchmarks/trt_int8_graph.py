"""The TensorRT INT8 input graph, checked without a GPU on real photos, in one run.

    .venv/bin/python benchmarks/trt_int8_graph.py [--data ../shared/data/intel-scenes/train] [--train 40]
        [--test 40] [--calib 10]   (images per class)

MobileNetV2 with torchvision ImageNet weights, frozen, a linear head fitted on `--train` photos per class;
the symmetric S8S8 QDQ file (model.int8.trt.onnx) calibrated on `--calib` other photos per class, then on
`--test` further photos per class:
- INT32 DequantizeLinear inputs (what TensorRT's parser refuses) with ONNX Runtime's default QuantizeBias
  and with tledge's QuantizeBias=False, and the Q/DQ check's problem counts (TensorRT rules);
- what the strongly typed build parses (the float region converted to FP16, opset 19) against the same QDQ
  graph in FP32: accuracy and top-1 agreement with FP32, both as QDQ simulated in float by ONNX Runtime's
  reference path (graph optimizations off), so the comparison isolates the FP16 region.
This is ONNX Runtime on the CPU, not TensorRT. Writes benchmarks/results/trt_int8_graph.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tledge.card import ModelCard  # noqa: E402
from tledge.preprocess import load_image, preprocess_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "intel-scenes" / "train"))
    parser.add_argument("--weights", default=str(REPO.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth"))
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--test", type=int, default=40)
    parser.add_argument("--calib", type=int, default=10)
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    import torch

    from tledge.exporting import int8 as int8_mod
    from tledge.exporting.fp16 import convert_to_fp16
    from tledge.exporting.onnx_export import export_onnx
    from tledge.exporting.qdq_check import check_qdq
    from tledge.exporting.tensorrt_build import QDQ_FP16_OPSET
    from tledge.models.backbones import create_model

    torch.set_num_threads(2)
    root = Path(args.data)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = {c: sorted((root / c).iterdir()) for c in classes}
    n_train, n_test, n_calib = args.train, args.test, args.calib
    train = [(p, i) for i, c in enumerate(classes) for p in files[c][:n_train]]
    test = [(p, i) for i, c in enumerate(classes) for p in files[c][n_train:n_train + n_test]]
    calib = [p for c in classes for p in files[c][n_train + n_test:n_train + n_test + n_calib]]
    card = ModelCard("mobilenet_v2", classes, input_size=(224, 224))
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", len(classes), args.weights).eval()

    def batches(items):
        for start in range(0, len(items), 32):
            chunk = items[start:start + 32]
            yield preprocess_batch([load_image(p) for p, _ in chunk], card), [label for _, label in chunk]

    started = time.perf_counter()
    with torch.inference_mode():
        feats, labels = [], []
        for x, batch_labels in batches(train):
            pooled = torch.nn.functional.adaptive_avg_pool2d(model.features(torch.from_numpy(x)), 1).flatten(1)
            feats.append(pooled)
            labels += batch_labels
    feats, labels = torch.cat(feats), torch.tensor(labels)
    head = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(feats), labels)
        loss.backward()
        optimizer.step()

    result: dict = {"images": {"train": len(train), "test": len(test), "calibration": len(calib)}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = export_onnx(model, card, tmp / "model.onnx")
        trt_file = int8_mod.quantize_int8(fp32, tmp / "model.int8.trt.onnx", calib, flavour="s8s8")
        default_bias = int8_mod.Int8Flavour("s8s8", True, False, "cpu")  # role "cpu": QuantizeBias left on
        int8_mod.FLAVOURS["s8s8-default-bias"] = default_bias
        try:
            old_file = int8_mod.quantize_int8(fp32, tmp / "default_bias.onnx", calib, flavour="s8s8-default-bias")
        finally:
            del int8_mod.FLAVOURS["s8s8-default-bias"]
        fp16_region = convert_to_fp16(trt_file, tmp / "model.int8.fp16.onnx", min_opset=QDQ_FP16_OPSET)
        for name, path in (("quantize_bias_default", old_file), ("quantize_bias_false", trt_file),
                           ("fp16_region", fp16_region)):
            graph = onnx.load(str(path))
            int32 = {i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT32}
            result[name] = {
                "int32_dequantize_inputs": sum(n.op_type == "DequantizeLinear" and n.input[0] in int32
                                               for n in graph.graph.node),
                "dequantize_nodes": sum(n.op_type == "DequantizeLinear" for n in graph.graph.node),
                "tensorrt_check_problems": len(check_qdq(graph, "tensorrt")),
            }

        def session(path, optimize=True):
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = 2
            if not optimize:
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            return ort.InferenceSession(str(path), options)

        sessions = {"fp32": session(fp32), "s8s8_ort_int8_kernels": session(trt_file),
                    "s8s8_qdq_fp32_region": session(trt_file, False), "s8s8_qdq_fp16_region": session(fp16_region, False)}
        outputs = {k: [] for k in sessions}
        truth: list[int] = []
        for x, batch_labels in batches(test):
            truth += batch_labels
            for key, sess in sessions.items():
                outputs[key].append(sess.run(None, {"input": x})[0])
    truth_arr = np.array(truth)
    reference = np.concatenate(outputs["fp32"]).argmax(1)
    result["accuracy"] = {}
    for key, chunks in outputs.items():
        predicted = np.concatenate(chunks).argmax(1)
        result["accuracy"][key] = {"accuracy": round(float((predicted == truth_arr).mean()), 4),
                                   "agreement_with_fp32": round(float((predicted == reference).mean()), 4)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = REPO / "benchmarks" / "results" / "trt_int8_graph.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
