"""Runtime backends, sources, info, TensorRT logic (on a stand-in) and the no-torch ONNX path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fake_tensorrt_runtime as fake_trt
from test_runtime_helpers import CLASSES, SIZE, artifacts, make_card, run_cli, write_engine_with_sidecar  # noqa: F401
from tledge.errors import TledgeError
from tledge.preprocess import load_image, preprocess_batch
from tledge.runtime import load_backend
from tledge.runtime.sources import ImageFilesSource, csi_pipeline, open_source

REPO = Path(__file__).resolve().parents[1]
TRT_NAMES_DIR = REPO.parent / "shared" / "tensorrt-api"  # next to the checkout when there; skipped when absent


def _batch(paths):
    return preprocess_batch([load_image(p) for p in paths], make_card())


def test_pt_and_onnx_agree(artifacts):
    x = _batch(artifacts["paths"])
    with load_backend(artifacts["pt"], "cpu") as torch_backend, load_backend(artifacts["onnx"], "cpu") as ort_backend:
        a, b = torch_backend.predict(x), ort_backend.predict(x)
        assert torch_backend.name == "torch-cpu-fp32" and ort_backend.name == "onnxruntime-cpu-fp32"
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    assert (a.argmax(1) == b.argmax(1)).all()


def test_backend_rejects_wrong_input_shape(artifacts):
    with load_backend(artifacts["onnx"], "cpu") as backend:
        with pytest.raises(TledgeError, match="does not match the model card"):
            backend.predict(np.zeros((1, 3, SIZE + 1, SIZE), np.float32))


@pytest.mark.parametrize("case", ["missing", "txt", "unknown_source", "missing_source", "engine_no_trt", "empty_dir"])
def test_bad_inputs_exit_2_with_one_line(artifacts, tmp_path, capsys, case):
    onnx = artifacts["onnx"]
    image = artifacts["paths"][0]
    if case == "missing":
        args = ["predict", tmp_path / "nope.onnx", image]
    elif case == "txt":
        bad = tmp_path / "model.txt"
        bad.write_text("hello")
        args = ["predict", bad, image]
    elif case == "unknown_source":
        odd = tmp_path / "data.xyz"
        odd.write_text("?")
        args = ["predict", onnx, odd]
    elif case == "missing_source":
        args = ["predict", onnx, tmp_path / "nothing-here"]
    elif case == "empty_dir":
        (tmp_path / "empty").mkdir()
        args = ["predict", onnx, tmp_path / "empty"]
    else:
        engine = write_engine_with_sidecar(tmp_path, make_card())
        args = ["predict", engine, image]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if case == "engine_no_trt":
        assert "TensorRT" in lines[0] or "GPU" in lines[0]


def test_folder_source_sorted_recursive_and_skips_unreadable(artifacts, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "sub/a.png"):
        (folder / name).write_bytes(Path(artifacts["paths"][1]).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("ignored")
    source = open_source(str(folder), prepare=lambda img: img.mean())
    items = list(source)
    assert [Path(i.source_id).name for i in items] == ["b.png", "broken.jpg", "a.png"]
    assert items[1].frame is None and items[1].error
    assert items[0].tensor is not None and items[0].frame.dtype == np.uint8


def test_glob_source(artifacts):
    source = open_source(str(artifacts["images"] / "*" / "*.png"))
    assert isinstance(source, ImageFilesSource)
    assert len(source) == sum(1 for p in artifacts["paths"] if p.suffix == ".png")


def test_csi_pipeline_string_and_error_without_gstreamer(capsys, artifacts):
    text = csi_pipeline(1, 1920, 1080, 30)
    assert "nvarguscamerasrc sensor-id=1" in text and text.rstrip().endswith("sync=false") and "appsink" in text
    import cv2

    if "GStreamer:                   NO" in cv2.getBuildInformation():
        code, _, err = run_cli(capsys, "predict", artifacts["onnx"], "csi://0")
        assert code == 2 and "GStreamer" in err


def test_camera_not_found_is_one_line(artifacts, capsys):
    code, _, err = run_cli(capsys, "predict", artifacts["onnx"], "/dev/video97")
    assert code == 2 and "camera /dev/video97 not found" in err and len(err.strip().splitlines()) == 1


def test_info_prints_card(artifacts, capsys):
    code, out, _ = run_cli(capsys, "info", artifacts["onnx"])
    assert code == 0
    assert "mobilenet_v2" in out and "cat, dog, fish" in out and "32, 32" in out
    code, out, _ = run_cli(capsys, "info", artifacts["pt"], "--json")
    assert code == 0 and json.loads(out)["class_names"] == CLASSES


def test_info_engine_reads_sidecar(tmp_path, capsys):
    engine = write_engine_with_sidecar(tmp_path, make_card())
    code, out, _ = run_cli(capsys, "info", engine)
    assert code == 0 and "tensorrt.version" in out and "10.3.0" in out and "8.7" in out


def test_onnx_path_runs_without_torch(artifacts, tmp_path):
    """Block `import torch` in a fresh interpreter and run `python -m tledge predict model.onnx image`."""
    script = textwrap.dedent(f"""
        import sys, runpy
        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch.") or name.startswith("torchvision"):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, BlockTorch())
        sys.argv = ["tledge", "predict", {str(artifacts['onnx'])!r}, {str(artifacts['paths'][0])!r},
                    "--topk", "2", "--json", {str(tmp_path / 'p.jsonl')!r}]
        try:
            runpy.run_module("tledge", run_name="__main__")
        finally:
            assert "torch" not in sys.modules, "torch got imported"
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert record["label"] in CLASSES and len(record["topk"]) == 2
    assert "rank" in done.stdout  # the one-image top-k table


# ----------------------------------------------------------------------------- TensorRT on a stand-in
def _engine(tmp_path, max_batch=8, dtype="FLOAT", **facts):
    data = fake_trt.engine_bytes((max_batch, 3, SIZE, SIZE), len(CLASSES), dtype=dtype)
    return write_engine_with_sidecar(tmp_path, make_card(), engine=data, **facts)


@pytest.mark.parametrize("dtype", ["FLOAT", "HALF"])
def test_tensorrt_backend_logic_on_stand_in(tmp_path, monkeypatch, dtype):
    """Checks tledge's call sequence and data flow against a recording stand-in: NOT a TensorRT test."""
    fake_trt.install(monkeypatch)
    from tledge.runtime.backends.tensorrt_backend import TensorRTBackend

    backend = load_backend(_engine(tmp_path, dtype=dtype), "auto")
    assert isinstance(backend, TensorRTBackend) and backend.name == "tensorrt-fp16" and backend.max_batch == 8
    x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    logits = backend.predict(x)
    expected = fake_trt.expected_logits(x.astype(np.float16 if dtype == "HALF" else np.float32).astype(np.float32), 3)
    np.testing.assert_allclose(logits, expected, rtol=1e-2, atol=1e-2)
    calls = [c[0] for c in fake_trt.CALLS]
    assert calls.index("deserialize_cuda_engine") < calls.index("create_execution_context") < calls.index("execute_async_v3")
    assert ("set_input_shape", "input", (8, 3, SIZE, SIZE)) in fake_trt.CALLS  # buffers sized for the profile max
    assert ("set_input_shape", "input", (3, 3, SIZE, SIZE)) in fake_trt.CALLS
    assert ("execute_async_v3", 0xBEEF) in fake_trt.CALLS
    assert sum(c[0] == "set_tensor_address" for c in fake_trt.CALLS) == 2
    with pytest.raises(TledgeError, match="exceeds"):
        backend.predict(np.zeros((9, 3, SIZE, SIZE), np.float32))
    backend.close()


@pytest.mark.parametrize("facts,installed,message", [
    ({"version": "8.6.1"}, {}, "built with TensorRT 8.6.1"),
    ({"compute_capability": [7, 2]}, {}, "compute capability 7.2"),
    ({}, {"device_count": 0}, "no CUDA GPU"),
])
def test_tensorrt_mismatch_errors_say_how_to_rebuild(tmp_path, monkeypatch, capsys, facts, installed, message):
    fake_trt.install(monkeypatch, **installed)
    engine = _engine(tmp_path, **facts)
    code, _, err = run_cli(capsys, "predict", engine, "0")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    if "TensorRT" in message or "capability" in message:
        assert "tledge export RUN --formats trt-fp16" in err


def test_tensorrt_engine_shape_disagrees_with_card(tmp_path, monkeypatch):
    fake_trt.install(monkeypatch)
    data = fake_trt.engine_bytes((4, 3, SIZE * 2, SIZE * 2), len(CLASSES))
    engine = write_engine_with_sidecar(tmp_path, make_card(), engine=data)
    with pytest.raises(TledgeError, match="disagrees with its model card"):
        load_backend(engine)


def test_tensorrt_api_names_exist_in_bindings():
    from tledge.runtime.backends.tensorrt_backend import TRT_RUNTIME_API_NAMES

    checked = 0
    for version in ("8.6.1", "10.3.0", "11.4.0.106"):  # JetPack 5 (8.5/8.6) has the named-tensor API too
        path = TRT_NAMES_DIR / f"names-{version}.txt"
        if not path.is_file():
            continue
        names = set(path.read_text().split())
        missing = [n for n in TRT_RUNTIME_API_NAMES if n not in names]
        assert not missing, f"not in TensorRT {version} bindings: {missing}"
        checked += 1
    if not checked:
        pytest.skip("no TensorRT name lists here")


def test_tensorrt_gpu_time_from_cuda_events_on_the_stream_handle(tmp_path, monkeypatch):
    """GPU compute time comes from two CUDA events around execute_async_v3, and TensorRT gets the stream
    handle itself (int(cudaStream_t)), not getPtr(), the host address of its Python-side storage. Stand-in
    handles mirror cuda-bindings' (checked against the real ones in test_cuda_bindings.py); not TensorRT."""
    fake_trt.install(monkeypatch)
    backend = load_backend(_engine(tmp_path), "auto")
    backend.predict(np.zeros((2, 3, SIZE, SIZE), np.float32))
    assert backend.last_gpu_ms == fake_trt.GPU_MS and backend.provider == "tensorrt"
    calls = [c[0] for c in fake_trt.CALLS]
    first = calls.index("execute_async_v3")
    assert fake_trt.CALLS[first] == ("execute_async_v3", 0xBEEF)
    assert calls[first - 1] == "cudaEventRecord" and calls[first + 1] == "cudaEventRecord"
    assert fake_trt.CALLS[first - 1][2] == fake_trt.CALLS[first + 1][2] == 0xBEEF  # events on that stream
    backend.close()


def test_tensorrt_gpu_time_in_predict_summary_and_bench_rows(tmp_path, monkeypatch, artifacts):
    from tledge.runtime.bench import BenchOptions, bench, format_bench_table
    from tledge.runtime.predict import PredictOptions, format_summary, predict_stream
    from tledge.runtime.sources import ImageFilesSource

    fake_trt.install(monkeypatch)
    engine = _engine(tmp_path)
    with load_backend(engine) as backend:
        source = ImageFilesSource("four", artifacts["paths"][:4])
        summary = predict_stream(backend, source, PredictOptions(batch=2, warmup=1))
    assert summary["provider"] == "tensorrt" and summary["stages_ms"]["gpu_compute"]["count"] == 2
    assert summary["stages_ms"]["gpu_compute"]["p50_ms"] == pytest.approx(fake_trt.GPU_MS)
    assert "gpu compute" in format_summary(summary) and "provider tensorrt" in format_summary(summary)
    result = bench([engine], options=BenchOptions([2], iters=3, warmup=1))
    row = result["rows"][0]
    assert row["status"] == "ok" and row["provider"] == "tensorrt"
    assert row["gpu_ms"] == pytest.approx(fake_trt.GPU_MS / 2)  # per image at batch 2
    assert "GPU ms/img" in format_bench_table(result)


def test_driver_too_old_is_named_and_torch_takes_over(tmp_path, monkeypatch):
    """cuda-python's CUDA 13 runtime on an older driver answers error 35: say so (not "no GPU"), and use
    torch's CUDA when it works."""
    import torch

    from tledge.runtime.backends import tensorrt_backend as tb

    fake_trt.install(monkeypatch, device_error=35)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    engine = _engine(tmp_path)
    with pytest.raises(TledgeError, match="driver is too old for this CUDA build.*error 35.*tledge\\[gpu\\]"):
        load_backend(engine)
    monkeypatch.setattr(tb, "_TorchMemory", lambda torch, index: tb._CudaPythonMemory(fake_trt.make_cudart()))
    with load_backend(engine) as backend:
        x = np.ones((1, 3, SIZE, SIZE), np.float32)
        np.testing.assert_allclose(backend.predict(x), fake_trt.expected_logits(x, len(CLASSES)), rtol=1e-5)


def test_builder_reports_driver_too_old_instead_of_no_gpu(monkeypatch):
    import torch

    from tledge.exporting import tensorrt_build

    fake_trt.install(monkeypatch, device_error=35)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TledgeError, match="driver is too old"):
        tensorrt_build.detect_gpu()
    assert "driver is too old" in tensorrt_build.tensorrt_unavailable_reason()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (8, 9))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Torch GPU")
    assert tensorrt_build.detect_gpu() == ("Torch GPU", "8.9")


def test_torch_fp32_on_cuda_is_not_tf32(artifacts, monkeypatch):
    """The PyTorch CUDA FP32 baseline (bench, parity) turns TF32 off; AMP leaves it alone. CUDA is mocked."""
    import torch

    import tledge.models.restore
    from tledge.runtime.backends.torch_backend import TorchBackend

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tledge.models.restore, "load_model", lambda path, device: (artifacts["model"], artifacts["card"]))
    try:
        amp = TorchBackend(artifacts["pt"], device="cuda", amp=True)
        assert amp.name == "torch-cuda-amp" and torch.backends.cudnn.allow_tf32 is True
        fp32 = TorchBackend(artifacts["pt"], device="cuda")
        assert fp32.name == "torch-cuda-fp32" and fp32.provider == "cuda"
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_engine_runs_on_the_gpu_index_asked_for(tmp_path, monkeypatch, capsys):
    fake_trt.install(monkeypatch, device_count=2)
    with load_backend(_engine(tmp_path), "cuda:1") as backend:
        backend.predict(np.zeros((1, 3, SIZE, SIZE), np.float32))
    assert ("cudaSetDevice", 1) in fake_trt.CALLS
    fake_trt.install(monkeypatch, device_count=1)
    with pytest.raises(TledgeError, match="no CUDA GPU"):
        load_backend(_engine(tmp_path), "cuda:1")
    code, _, err = run_cli(capsys, "predict", _engine(tmp_path), "0", "--device", "gpu2")
    assert code == 2 and "device must be auto, cpu, cuda or cuda:N, got 'gpu2'" in err
