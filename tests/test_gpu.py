"""CUDA paths (run with `pytest -m gpu` on an NVIDIA machine; skipped elsewhere). scripts/gpu_check.sh runs
these plus TensorRT engine builds, predict and bench end to end."""

import numpy as np
import pytest
import torch

from tledge.checkpoint import save_checkpoint
from tledge.training.config import TrainConfig
from tledge.training.fit import train_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_amp_training_on_cuda_learns(make_image_folder, tmp_path, log_lines):
    data = make_image_folder(per_class=20, size=32)
    lines = log_lines
    result = train_run(TrainConfig(data=str(data), model="resnet18", weights="none", img_size=32, epochs=4,
                                   batch_size=8, augment="none", workers=0, device="cuda", lr=1e-3,
                                   project=str(tmp_path / "runs")))
    assert any("AMP" in line and "channels_last" in line for line in lines)
    assert result.test_metrics["accuracy"] > 0.6


def test_torch_cuda_backend_matches_cpu(tmp_path):
    from tledge.card import ModelCard
    from tledge.runtime.backends import load_backend
    from tledge.models.backbones import create_model

    card = ModelCard(arch="resnet18", class_names=["a", "b", "c"], input_size=(64, 64))
    model = create_model("resnet18", 3).eval()
    save_checkpoint(tmp_path / "best.pt", {"card": card.to_dict(), "model": model.state_dict()})
    batch = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    cpu = load_backend(tmp_path / "best.pt", "cpu").predict(batch)
    cuda = load_backend(tmp_path / "best.pt", "cuda")
    assert cuda.name == "torch-cuda-fp32"
    # TF32 is off for the FP32 baseline (TF32 convolutions differ from CPU by ~1e-3 relative on Ampere+);
    # what is left is FP32 summation order in cuDNN vs oneDNN.
    assert not torch.backends.cudnn.allow_tf32
    np.testing.assert_allclose(cuda.predict(batch), cpu, rtol=2e-4, atol=2e-4)


def test_onnxruntime_cuda_provider_matches_cpu(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    from tledge.card import ModelCard, embed_in_onnx
    from tledge.runtime.backends import load_backend
    from tledge.models.backbones import create_model
    import onnx

    card = ModelCard(arch="resnet18", class_names=["a", "b", "c"], input_size=(64, 64))
    model = create_model("resnet18", 3).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), path, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    proto = onnx.load(path)
    embed_in_onnx(proto, card)
    onnx.save(proto, path)
    batch = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    cpu = load_backend(path, "cpu").predict(batch)
    gpu = load_backend(path, "auto", provider="cuda", strict_fp32=True)  # CUDA EP with TF32 off
    assert gpu.name == "onnxruntime-cuda-fp32-notf32" and gpu.provider == "cuda"
    np.testing.assert_allclose(gpu.predict(batch), cpu, rtol=2e-4, atol=2e-4)


def test_onnxruntime_tensorrt_ep_engine_cache(tmp_path):
    """The TensorRT EP writes its engine cache on the first session and reuses it on the second."""
    ort = pytest.importorskip("onnxruntime")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu without the TensorRT provider")
    from tledge.card import ModelCard, embed_in_onnx
    from tledge.runtime.backends import load_backend
    from tledge.models.backbones import create_model
    import onnx

    card = ModelCard("resnet18", ["a", "b", "c"], input_size=(64, 64))
    path = tmp_path / "m.onnx"
    torch.onnx.export(create_model("resnet18", 3).eval(), torch.zeros(1, 3, 64, 64), path, dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    proto = onnx.load(path)
    embed_in_onnx(proto, card)
    onnx.save(proto, path)
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    first = load_backend(path, "auto", provider="tensorrt")
    first.predict(batch)
    assert first.provider == "tensorrt", first.notes
    cache = tmp_path / "m.onnx.trt-cache"
    assert any(p.suffix == ".engine" for p in cache.iterdir())
