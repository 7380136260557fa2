"""ONNX Runtime provider choice and options, on a stand-in onnxruntime-gpu (tests/fake_onnxruntime.py) that
wraps the real CPU build: engine cache, FP16, device index, the TensorRT > CUDA > CPU chain, fallbacks named
and warned about, the CPU INT8 flavour kept on the CPU, FP32 parity off the TensorRT EP with TF32 off, and the
onnxruntime / onnxruntime-gpu install check."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import fake_onnxruntime
from test_runtime_helpers import artifacts, run_cli  # noqa: F401
from tledge.card import card_from_onnx, embed_in_onnx
from tledge.errors import TledgeError
from tledge.runtime.backends import onnxrt
from tledge.runtime.backends.ort_install import GPU_FIX, diagnose

TRT, CUDA, CPU = fake_onnxruntime.ALL


def test_provider_chain():
    assert onnxrt.choose_providers([TRT, CUDA, CPU], provider="tensorrt") == [TRT, CUDA, CPU]
    assert onnxrt.choose_providers([TRT, CPU], provider="tensorrt") == [TRT, CPU]
    assert onnxrt.choose_providers([TRT, CUDA, CPU], provider="cuda") == [CUDA, CPU]
    assert onnxrt.choose_providers([TRT, CUDA, CPU]) == [TRT, CUDA, CPU]
    assert onnxrt.choose_providers([TRT, CUDA, CPU], strict_fp32=True) == [CUDA, CPU]
    assert onnxrt.choose_providers([TRT, CUDA, CPU], device="cpu") == [CPU]
    assert onnxrt.choose_providers([TRT, CUDA, CPU], cpu_only=True) == [CPU]


def test_missing_provider_is_an_error_with_the_install_fix():
    with pytest.raises(TledgeError, match="'tensorrt' is not available here.*onnxruntime-gpu"):
        onnxrt.choose_providers([CPU], provider="tensorrt")
    with pytest.raises(TledgeError, match="unknown provider"):
        onnxrt.choose_providers([CPU], provider="openvino")


def test_tensorrt_ep_gets_cache_fp16_and_device(artifacts, monkeypatch, tmp_path):
    ort = fake_onnxruntime.install(monkeypatch)
    model = tmp_path / "model.onnx"
    model.write_bytes(artifacts["onnx"].read_bytes())
    backend = onnxrt.OnnxRuntimeBackend(model, device="cuda:1", provider="tensorrt", fp16=True)
    session = ort.SESSIONS[-1]
    assert session.requested == [TRT, CUDA, CPU]
    trt = session.options[TRT]
    cache = tmp_path / "model.onnx.trt-cache"
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_engine_cache_path"] == str(cache)
    assert trt["trt_timing_cache_path"] == str(cache) and cache.is_dir()
    assert trt["trt_fp16_enable"] == "True" and trt["trt_int8_enable"] == "False" and trt["device_id"] == "1"
    assert session.options[CUDA]["device_id"] == "1"
    assert backend.provider == "tensorrt" and backend.name == "onnxruntime-tensorrt-fp16" and not backend.notes
    elsewhere = tmp_path / "cache"
    onnxrt.OnnxRuntimeBackend(model, provider="tensorrt", cache_dir=elsewhere)
    assert ort.SESSIONS[-1].options[TRT]["trt_engine_cache_path"] == str(elsewhere)
    assert ort.SESSIONS[-1].options[TRT]["trt_fp16_enable"] == "False"  # only when asked


def test_fallback_is_named_and_warned(artifacts, monkeypatch, tmp_path):
    fake_onnxruntime.install(monkeypatch, loads=[CUDA])  # TensorRT's libraries fail to load
    model = tmp_path / "model.onnx"
    model.write_bytes(artifacts["onnx"].read_bytes())
    backend = onnxrt.OnnxRuntimeBackend(model, provider="tensorrt")
    assert backend.provider == "cuda" and backend.name == "onnxruntime-cuda-fp32"
    assert len(backend.notes) == 1 and backend.notes[0].startswith("warning: tensorrt provider did not load")
    x = np.zeros((2, 3, *artifacts["card"].input_size), np.float32)
    assert backend.predict(x).shape == (2, 3)


class _RecordingTensorrtFinder:
    """Imports of `tensorrt` get an empty stand-in module and are logged into the fake onnxruntime's EVENTS, so
    the order "import tensorrt, then the session" can be checked (the pip wheel loads libnvinfer.so.10 on
    import: tensorrt_bindings/__init__.py imports tensorrt_libs, whose __init__ loads the libraries)."""

    def __init__(self, events, fail=False):
        self.events, self.fail = events, fail

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery

        return importlib.machinery.ModuleSpec(name, self) if name == "tensorrt" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.events.append(("import tensorrt",))
        if self.fail:
            raise ImportError("libnvinfer.so.10: cannot open shared object file")


@pytest.mark.parametrize("provider, expected", [
    ("tensorrt", [("import tensorrt",), ("preload_dlls",), ("session", (TRT, CUDA, CPU))]),
    ("cuda", [("preload_dlls",), ("session", (CUDA, CPU))]),
])  # after the CPU session that reads the model card
def test_pip_installed_nvidia_libraries_are_loaded_before_the_session(artifacts, monkeypatch, tmp_path, provider,
                                                                       expected):
    import sys

    ort = fake_onnxruntime.install(monkeypatch)
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_RecordingTensorrtFinder(ort.EVENTS), *sys.meta_path])
    model = tmp_path / "model.onnx"
    model.write_bytes(artifacts["onnx"].read_bytes())
    backend = onnxrt.OnnxRuntimeBackend(model, provider=provider)
    assert ort.EVENTS == [("session", (CPU,)), *expected] and backend.notes == []


def test_cpu_session_loads_no_gpu_libraries(artifacts, monkeypatch):
    ort = fake_onnxruntime.install(monkeypatch)
    onnxrt.OnnxRuntimeBackend(artifacts["onnx"], device="cpu")
    assert ort.EVENTS == [("session", (CPU,))]


def test_fallback_says_which_library_did_not_load(artifacts, monkeypatch, tmp_path, capsys):
    import sys

    ort = fake_onnxruntime.install(monkeypatch, loads=[CUDA],
                                   preload_output="Failed to load libcudnn.so.9: cannot open shared object file")
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_RecordingTensorrtFinder(ort.EVENTS, fail=True), *sys.meta_path])
    model = tmp_path / "model.onnx"
    model.write_bytes(artifacts["onnx"].read_bytes())
    backend = onnxrt.OnnxRuntimeBackend(model, provider="tensorrt")
    assert backend.provider == "cuda" and len(backend.notes) == 1
    assert "import tensorrt failed (libnvinfer.so.10" in backend.notes[0] and "libcudnn.so.9" in backend.notes[0]
    assert "Failed to load" not in capsys.readouterr().out  # said once, in the warning, not printed loose


def _with_int8_role(src, dst, role):
    model = onnx.load(str(src))
    card = card_from_onnx(src)
    embed_in_onnx(model, card.replace(precision="int8", extra={"int8": {"role": role, "flavour": "x"}}))
    onnx.save(model, str(dst))
    return dst


def test_cpu_int8_flavour_stays_on_the_cpu(artifacts, monkeypatch, tmp_path):
    ort = fake_onnxruntime.install(monkeypatch)
    cpu_file = _with_int8_role(artifacts["onnx"], tmp_path / "model.int8.onnx", "cpu")
    backend = onnxrt.OnnxRuntimeBackend(cpu_file)
    assert ort.SESSIONS[-1].requested == [CPU] and backend.name == "onnxruntime-cpu-int8"
    assert "CPU INT8 flavour" in backend.notes[0]
    with pytest.raises(TledgeError, match="CPU INT8 flavour.*model.int8.trt.onnx"):
        onnxrt.OnnxRuntimeBackend(cpu_file, provider="tensorrt")
    trt_file = _with_int8_role(artifacts["onnx"], tmp_path / "model.int8.trt.onnx", "tensorrt")
    backend = onnxrt.OnnxRuntimeBackend(trt_file, provider="tensorrt")
    assert ort.SESSIONS[-1].options[TRT]["trt_int8_enable"] == "True" and backend.name == "onnxruntime-tensorrt-int8"


def test_fp32_parity_runs_off_the_tensorrt_ep_with_tf32_off(artifacts, monkeypatch):
    from tledge.verification.parity import ParityData, run_parity

    ort = fake_onnxruntime.install(monkeypatch)
    card = artifacts["card"]
    data = ParityData(artifacts["paths"][:4], [0, 1, 2, 0], "four images")
    ref = onnxrt.OnnxRuntimeBackend(artifacts["onnx"], device="cpu")
    results, _ = run_parity(ref.predict, [("onnx", artifacts["onnx"], "fp32")], data, card)
    session = ort.SESSIONS[-1]
    assert session.requested == [CUDA, CPU] and session.options[CUDA]["use_tf32"] == "0"
    assert results[0].backend == "onnxruntime-cuda-fp32-notf32" and results[0].passed


def test_install_check_names_the_clash_and_the_fix(monkeypatch, artifacts, capsys):
    ort = fake_onnxruntime.make(available=[CPU])
    both = diagnose({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.32.0"}, ort)
    assert "both onnxruntime and onnxruntime-gpu" in both.problem and "CPU build is the one loaded" in both.problem
    assert both.fix == GPU_FIX and "fix: pip uninstall -y onnxruntime onnxruntime-gpu" in both.line()
    cpu = diagnose({"onnxruntime": "1.32.0"}, ort)
    assert cpu.problem is None and "installed: onnxruntime 1.32.0; providers: CPU" in cpu.line()
    broken = diagnose({"onnxruntime-gpu": "1.32.0"}, ort)
    assert "offers no CUDA/TensorRT provider" in broken.problem
    code, out, _ = run_cli(capsys, "info", artifacts["onnx"])
    assert code == 0 and "onnxruntime " in out and "installed: onnxruntime" in out


def test_cli_cache_and_fp16_reach_the_tensorrt_provider(artifacts, monkeypatch, capsys, tmp_path):
    ort = fake_onnxruntime.install(monkeypatch)
    cache = tmp_path / "trt"
    code, out, err = run_cli(capsys, "predict", artifacts["onnx"], artifacts["paths"][0], "--provider", "tensorrt",
                             "--cache", cache, "--fp16")
    assert code == 0, err
    trt = next(s for s in ort.SESSIONS if TRT in s.options).options[TRT]
    assert trt["trt_engine_cache_path"] == str(cache) and trt["trt_fp16_enable"] == "True"
    assert "onnxruntime-tensorrt-fp16" in out and "provider tensorrt" in out
    code, _, err = run_cli(capsys, "predict", artifacts["pt"], artifacts["paths"][0], "--fp16")
    assert code == 2 and "--fp16 applies to .onnx and .xml artifacts only" in err


def test_tensorrt_ep_gets_one_batch_profile_for_every_batch_size(artifacts, monkeypatch, capsys):
    """trt_profile_{min,opt,max}_shapes ("input:NxCxHxW", ONNX Runtime's TensorRT EP options) cover batch 1 to
    max(batch, 32): a partial last batch runs on the same engine instead of a rebuild inside predict or bench."""
    from tledge.runtime.bench import BenchOptions, bench

    ort = fake_onnxruntime.install(monkeypatch)
    height, width = artifacts["card"].input_size
    code, _, err = run_cli(capsys, "predict", artifacts["onnx"], artifacts["paths"][0], "--provider", "tensorrt",
                           "--batch", "8")
    assert code == 0, err
    trt = next(s for s in ort.SESSIONS if TRT in s.options).options[TRT]
    assert (trt["trt_profile_min_shapes"], trt["trt_profile_opt_shapes"], trt["trt_profile_max_shapes"]) == (
        f"input:1x3x{height}x{width}", f"input:8x3x{height}x{width}", f"input:32x3x{height}x{width}")
    ort.SESSIONS.clear()
    bench([artifacts["onnx"]], options=BenchOptions([1, 48], iters=1, warmup=0, device="cuda"))
    trt = next(s for s in ort.SESSIONS if TRT in s.options).options[TRT]
    assert trt["trt_profile_opt_shapes"] == trt["trt_profile_max_shapes"] == f"input:48x3x{height}x{width}"
    assert onnxrt.profile_shapes("x", (224, 224))["trt_profile_opt_shapes"] == "x:1x3x224x224"


def test_stand_in_names_are_the_real_onnxruntimes():
    """The provider names tledge asks for and the stand-in offers are ONNX Runtime's own (the real module, CPU
    build here, lists every provider it knows), and preload_dlls, where the real module has it, takes the
    no-argument call tledge makes."""
    import inspect

    real = pytest.importorskip("onnxruntime")
    if real.__name__ != "onnxruntime" or not hasattr(real, "get_all_providers"):
        pytest.skip("onnxruntime is replaced by a stand-in in this process")
    known = set(real.get_all_providers())
    assert set(onnxrt.PREFERENCE) <= known and set(fake_onnxruntime.ALL) <= known
    if hasattr(real, "preload_dlls"):
        assert all(p.default is not inspect.Parameter.empty for p in inspect.signature(real.preload_dlls).parameters.values())


def test_fallback_with_onnxruntime_gpu_installed_blames_the_libraries_not_the_package(artifacts, monkeypatch, tmp_path):
    """Seen with the real onnxruntime-gpu 1.31.1 and no CUDA libraries: both GPU providers are listed, the session
    runs on the CPU. The warning must not tell the user to install onnxruntime-gpu, which is there."""
    from tledge.runtime.backends import ort_install

    fake_onnxruntime.install(monkeypatch, loads=[CPU])
    monkeypatch.setattr(ort_install, "installed_distributions", lambda version_of=None: {"onnxruntime-gpu": "1.31.1"})
    model = tmp_path / "model.onnx"
    model.write_bytes(artifacts["onnx"].read_bytes())
    backend = onnxrt.OnnxRuntimeBackend(model, provider="cuda")
    assert backend.provider == "cpu" and len(backend.notes) == 1
    assert "onnxruntime-gpu 1.31.1 is installed, but the CUDA/TensorRT libraries" in backend.notes[0]
    assert "need onnxruntime-gpu" not in backend.notes[0] and "pip uninstall" not in backend.notes[0]
