"""Install metadata that must stay true: one ONNX Runtime per install, the CUDA major pinned per target,
a torch floor that has the APIs the code calls, and a requires-python the code really supports (vermin)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
META = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = META["optional-dependencies"]
ORT = ("onnxruntime", "onnxruntime-gpu")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def _floor(requirement: str) -> tuple[int, ...]:
    match = re.search(r">=\s*([\d.]+)", requirement)
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def ort_builds(extras) -> set[str]:
    requirements = list(META["dependencies"]) + [r for e in extras for r in EXTRAS[e]]
    return {_name(r) for r in requirements} & set(ORT)


def test_no_install_gets_both_onnxruntime_builds():
    assert ort_builds([]) == set()  # the base names neither
    for extra in EXTRAS:
        assert len(ort_builds([extra])) <= 1, extra
    assert ort_builds(["cpu"]) == {"onnxruntime"} and ort_builds(["gpu"]) == {"onnxruntime-gpu"}
    assert ort_builds(["gpu-cu13"]) == {"onnxruntime-gpu"} and ort_builds(["jetson"]) == set()


def test_readme_install_commands_pick_one_onnxruntime():
    pattern = r"""pip install (?:-e )?["']?(?:\.|tledge)\[([a-z0-9,\- ]+)\]"""
    commands = re.findall(pattern, (REPO / "README.md").read_text())
    assert commands, "README has no install commands"
    gpu_commands = re.findall(pattern, (REPO / "docs" / "reference.md").read_text())  # GPU and Jetson installs
    assert {"train,export,gpu", "train,export,gpu-cu13", "jetson"} <= set(gpu_commands), gpu_commands
    for extras in commands + gpu_commands:
        names = [e.strip() for e in extras.split(",")]
        assert set(names) <= set(EXTRAS), names
        assert len(ort_builds(names)) <= 1, f"[{extras}] installs both onnxruntime builds"
    assert ort_builds(["train", "export", "dev"]) == {"onnxruntime"}  # the CPU quick start works


def _spec(extra: str, name: str):
    from packaging.requirements import Requirement

    return next(Requirement(r).specifier for r in EXTRAS[extra] if _name(r) == name)


def test_gpu_extras_pin_the_cuda_major():
    for extra, major in (("gpu", 12), ("gpu-cu13", 13)):
        names = {_name(r): r for r in EXTRAS[extra]}
        assert f"tensorrt-cu{major}" in names and "tensorrt" not in names  # `tensorrt` 11 pulls tensorrt_cu13
        assert "cuda-python" not in names  # 12.6.2.post1 is monolithic: it overwrites cuda-bindings 13's files
        cuda = _spec(extra, "cuda-bindings")
        assert f"{major}.9.0" in cuda and f"{major + 1}.0.0" not in cuda and f"{major - 1}.9.0" not in cuda
    assert [_name(r) for r in EXTRAS["jetson"]] == ["cuda-python"]
    assert _floor(EXTRAS["jetson"][0])[0] == 12 and "<13" in EXTRAS["jetson"][0]  # JetPack 6 is CUDA 12


def test_onnxruntime_gpu_build_follows_the_extras_cuda_major():
    """onnxruntime-gpu wheels on PyPI (read from the wheels' build_and_package_info.py): 1.26.0 is CUDA 12.8,
    1.27.0 and 1.31.1 are CUDA 13.0. An extra's pin must keep its ONNX Runtime on the extra's CUDA major."""
    assert "1.26.0" in _spec("gpu", "onnxruntime-gpu") and "1.27.0" not in _spec("gpu", "onnxruntime-gpu")
    assert "1.27.0" in _spec("gpu-cu13", "onnxruntime-gpu") and "1.26.0" not in _spec("gpu-cu13", "onnxruntime-gpu")


def test_tensorrt_pin_is_what_onnxruntimes_tensorrt_provider_loads():
    """libonnxruntime_providers_tensorrt.so (1.26 and 1.31 alike) needs libnvinfer.so.10: TensorRT 11 wheels
    would leave ONNX Runtime's TensorRT provider unable to load."""
    for extra, name in (("gpu", "tensorrt-cu12"), ("gpu-cu13", "tensorrt-cu13")):
        spec = _spec(extra, name)
        assert "10.13.3.9" in spec and "11.0.0.114" not in spec and "11.4.0.106" not in spec, (extra, spec)


def test_gpu_cu13_goes_with_the_installed_cuda_13_torch():
    """torch's CUDA 13 wheels require cuda-bindings 13: the gpu-cu13 extra must be installable beside them, and
    the CUDA 12 extra must not be (pip then refuses instead of mixing CUDA majors)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    try:
        wanted = [Requirement(r) for r in requires("torch") or [] if _name(r) == "cuda-bindings"]
    except PackageNotFoundError:
        pytest.skip("torch is not installed")
    if not wanted:
        pytest.skip("this torch build does not require cuda-bindings (a CPU or CUDA 12 build)")
    needed = wanted[0].specifier
    candidates = [f"{major}.{minor}.{patch}" for major in (12, 13, 14) for minor in range(10) for patch in range(6)]
    both = [v for v in candidates if v in needed and v in _spec("gpu-cu13", "cuda-bindings")]
    assert both, f"torch needs cuda-bindings{needed}; gpu-cu13 pins {_spec('gpu-cu13', 'cuda-bindings')}"
    assert not [v for v in candidates if v in needed and v in _spec("gpu", "cuda-bindings")]


def test_torch_floor_has_grad_scaler_cuda():
    """tledge.models.device uses torch.amp.GradScaler("cuda"), which exists from torch 2.3."""
    source = (REPO / "tledge" / "models" / "device.py").read_text()
    assert "torch.amp.GradScaler(" in source
    for extra in ("train", "export"):
        torch_req = next(r for r in EXTRAS[extra] if _name(r) == "torch")
        assert _floor(torch_req) >= (2, 3), torch_req


def test_requires_python_matches_the_code():
    """vermin reads every module and reports the oldest Python that runs it; requires-python must not promise
    less. Modules without postponed annotations are checked with their annotations evaluated too."""
    floor = _floor(META["requires-python"])
    assert floor == (3, 10)  # JetPack 6's Python; JetPack 5 (3.8) is not supported: see docs/reference.md "Jetson"
    vermin = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed (pip install vermin; it is in the dev extra)")
    target = f"-t={'.'.join(str(p) for p in floor)}-"
    package = REPO / "tledge"
    eager = [str(m) for m in package.rglob("*.py") if "from __future__ import annotations" not in m.read_text()]
    for extra_args, paths in (([], [str(package)]), (["--eval-annotations"], eager)):
        if not paths:
            continue
        done = subprocess.run([vermin, "--no-tips", "--violations", target, *extra_args, *paths],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-1000:]


def test_trackers_are_their_own_extra_and_the_runtime_install_does_not_pull_them():
    """--track's packages come with `track` (and `dev`, for the tests), never with the base or runtime extras."""
    trackers = {"tensorboard", "mlflow", "mlflow-skinny"}
    assert {"tensorboard", "mlflow"} <= {_name(r) for r in EXTRAS["track"]}
    assert not {_name(r) for r in META["dependencies"]} & trackers
    for extra, requirements in EXTRAS.items():
        if extra not in ("track", "dev"):
            assert not {_name(r) for r in requirements} & trackers, extra


def test_optuna_is_the_sweep_extra_and_the_runtime_install_does_not_pull_it():
    """tledge sweep's study engine comes with `sweep` (and `dev`, for the tests), never with the base install."""
    assert "optuna" in {_name(r) for r in EXTRAS["sweep"]} and "optuna" in {_name(r) for r in EXTRAS["dev"]}
    assert "optuna" not in {_name(r) for r in META["dependencies"]}
    for extra, requirements in EXTRAS.items():
        if extra not in ("sweep", "dev"):
            assert "optuna" not in {_name(r) for r in requirements}, extra
