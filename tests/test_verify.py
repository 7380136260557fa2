"""Verification that travels: the parity pack beside every export, `tledge verify` on another machine (no torch,
no dataset), verdicts with the environment they were obtained in, and the warning when the device differs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from test_export import CLASSES, SIZE, _card, _write_images, tiny_model, tiny_run  # noqa: F401 - fixtures
from tledge.cli import main
from tledge.errors import TledgeError
from tledge.exporting.pipeline import export_run
from tledge.provenance import environment, pack, verdicts


@pytest.fixture(scope="module")
def shipped(tiny_run, tmp_path_factory):
    """An export of the tiny run (onnx + CPU INT8), then only its export folder copied to 'the device'."""
    out = tmp_path_factory.mktemp("exported") / "export"
    result = export_run(tiny_run, "onnx,int8", out, tolerance="int8=100")
    device = tmp_path_factory.mktemp("device") / "export"
    shutil.copytree(out, device)
    return result, out, device


def _parity_rows(export_dir: Path) -> dict:
    return {Path(r["artifact"]).name: r for r in json.loads((export_dir / "parity.json").read_text())["results"]}


# ----------------------------------------------------------------------------------------- the pack
def test_export_writes_a_pack_whose_reference_is_pytorch_on_its_own_files(shipped, tiny_model):
    _, out, _ = shipped
    loaded = pack.read_pack(out / pack.PACK_DIR)
    assert len(loaded.paths) == 24 and sorted(set(loaded.labels)) == [0, 1, 2]  # the 8/class test split, whole
    assert loaded.manifest["sampling"] == {"images": 24, "of": 24, "cap": 2500, "seed": 0, "rule": "all"}
    assert loaded.class_names == CLASSES and loaded.manifest["reencoded"] == 0
    model, card = tiny_model
    from tledge.preprocess import load_batch

    batch, kept = load_batch(loaded.paths, card)
    with torch.no_grad():
        want = model(torch.from_numpy(batch)).numpy()
    assert len(kept) == 24
    np.testing.assert_allclose(loaded.reference, want, rtol=1e-4, atol=1e-4)
    assert loaded.input_sha == [pack.tensor_sha(x) for x in batch]  # bit-identical inputs on this machine


def test_export_records_each_artifacts_first_verdict_with_this_environment(shipped):
    _, out, _ = shipped
    for name in ("model.onnx", "model.int8.onnx"):
        recorded = verdicts.read_verdicts(out / name)
        assert len(recorded) == 1 and recorded[0]["by"] == "export"
        env = recorded[0]["environment"]
        assert env["runtime"] == "onnxruntime" and env["provider"] == "cpu"
        assert env["cpu_kernels"] == environment.cpu_kernels() and env["runtime_version"]
        assert recorded[0]["images"] == 24 and recorded[0]["outcome"] == _parity_rows(out)[name]["outcome"]
        assert _parity_rows(out)[name]["environment"]["cpu_kernels"] == env["cpu_kernels"]  # parity.json says too


def test_stratified_sample_keeps_class_shares_is_seeded_and_capped():
    labels = [0] * 600 + [1] * 300 + [2] * 100 + [3] * 2
    picked = pack.stratified_sample(labels, 100, seed=3)
    counts = np.bincount([labels[i] for i in picked], minlength=4).tolist()
    assert len(picked) == 100 and counts[3] >= 1 and counts[0] in (59, 60) and counts[1] in (29, 30)
    assert picked == sorted(picked) == pack.stratified_sample(labels, 100, seed=3)
    assert picked != pack.stratified_sample(labels, 100, seed=4)
    assert pack.stratified_sample(labels[:50], 100) == list(range(50))


def test_large_photos_are_reencoded_and_get_their_own_reference(tmp_path, tiny_model):
    model, card = tiny_model
    rng = np.random.default_rng(0)
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), rng.integers(0, 255, (400, 300, 3), dtype=np.uint8))  # noise: ~360 kB as PNG
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    assert big.stat().st_size > pack.VERBATIM_MAX_BYTES > small.stat().st_size

    def reference(batch):
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    from tledge.preprocess import load_batch

    batch, _ = load_batch([big, small], card)
    folder = pack.write_pack(tmp_path / "out", [big, small], [0, 1], reference(batch),
                             [pack.tensor_sha(x) for x in batch], card, "two photos", {}, reference=reference)
    loaded = pack.read_pack(folder)
    assert loaded.manifest["reencoded"] == 1 and loaded.paths[0].suffix == ".jpg"
    assert loaded.paths[0].stat().st_size < big.stat().st_size / 2
    assert loaded.paths[1].read_bytes() == small.read_bytes()  # small files travel byte for byte
    stored, _ = load_batch(loaded.paths, card)
    np.testing.assert_allclose(loaded.reference, reference(stored), rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "out" / f".{pack.PACK_DIR}.tmp").exists()


# ----------------------------------------------------------------------------------------- verify
def test_verify_on_the_copied_folder_reproduces_the_exports_numbers(shipped, capsys):
    _, out, device = shipped
    exported = _parity_rows(out)
    for name in ("model.onnx", "model.int8.onnx"):
        code = main(["verify", str(device / name)])
        printed = capsys.readouterr().out
        assert code == {"within": 0, "over": 3, "inconclusive": 4}[exported[name]["outcome"]]
        recorded = verdicts.read_verdicts(device / name)[-1]
        assert recorded["by"] == "verify" and recorded["inputs_differ"] == 0
        for key in ("images", "agreement", "acc_artifact", "acc_reference", "gains", "losses", "outcome"):
            assert recorded[key] == exported[name][key], key
        assert recorded["max_rel_diff"] == pytest.approx(exported[name]["max_rel_diff"], rel=1e-6, abs=1e-9)
        assert f"{exported[name]['agreement']:.2f}" in printed and "environment: onnxruntime" in printed
    # one verdict per environment: the export's (same environment) was replaced, not duplicated
    assert len(verdicts.read_verdicts(device / "model.onnx")) == 1


def test_verify_runs_without_torch_installed(shipped, tmp_path):
    _, _, device = shipped
    target = tmp_path / "export"
    shutil.copytree(device, target)
    before = verdicts.verdicts_path(target / "model.int8.onnx").read_text()
    script = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
              "from tledge.cli import main\n"
              f"code = main(['verify', {str(target / 'model.int8.onnx')!r}, '--no-record'])\n"
              "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None], 'torch imported'\n"
              "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 4), done.stderr
    assert "verify: model.int8.onnx on 24 pack images" in done.stdout
    assert verdicts.verdicts_path(target / "model.int8.onnx").read_text() == before  # --no-record


def test_verify_exit_codes_follow_the_gate(shipped, capsys):
    _, _, device = shipped
    # ONNX vs PyTorch differ by ~1e-7 of the logit scale: a zero tolerance is over budget (exit 3)
    assert main(["verify", str(device / "model.onnx"), "--tolerance", "onnx=0", "--no-record"]) == 3
    assert "over its parity budget" in capsys.readouterr().err
    # a 99.9% agreement gate cannot be settled by 24 images (exit 4, with how many would)
    assert main(["verify", str(device / "model.onnx"), "--tolerance", "onnx.agreement=99.9", "--no-record"]) == 4
    assert "3,838 labelled images would settle it" in capsys.readouterr().err


@pytest.mark.parametrize("damage, message", [
    ("missing_pack", "no parity pack at"),
    ("edited_image", "parity pack damaged: 1 file(s)"),
    ("edited_reference", "parity pack damaged: 1 file(s)"),
    ("other_classes", "is the parity pack of a model with classes"),
    ("checkpoint", "verify checks exported artifacts"),
])
def test_verify_refuses_what_it_cannot_judge(shipped, tiny_run, tmp_path, capsys, damage, message):
    _, _, device = shipped
    target = tmp_path / "export"
    shutil.copytree(device, target)
    folder = target / pack.PACK_DIR
    artifact = str(target / "model.onnx")
    if damage == "missing_pack":
        shutil.rmtree(folder)
    elif damage == "edited_image":
        first = sorted((folder / "images").iterdir())[0]
        first.write_bytes(first.read_bytes() + b"x")
    elif damage == "edited_reference":
        np.savez(folder / pack.REFERENCE, logits=np.zeros((24, 3), np.float32))
    elif damage == "other_classes":
        manifest = json.loads((folder / pack.MANIFEST).read_text())
        manifest["class_names"] = ["a", "b", "c"]
        (folder / pack.MANIFEST).write_text(json.dumps(manifest))
    elif damage == "checkpoint":
        artifact = str(tiny_run / "best.pt")
    before = verdicts.verdicts_path(target / "model.onnx").read_text()
    assert main(["verify", artifact]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert verdicts.verdicts_path(target / "model.onnx").read_text() == before  # nothing recorded


# ----------------------------------------------------------------------------------------- other devices
def test_another_kernel_family_is_warned_in_predict_bench_and_load_until_verified_there(shipped, tmp_path,
                                                                                     monkeypatch, capsys):
    _, _, device = shipped
    target = tmp_path / "export"
    shutil.copytree(device, target)
    int8 = target / "model.int8.onnx"
    image = sorted((target / pack.PACK_DIR / "images").iterdir())[0]
    here = environment.cpu_kernels()
    other = "avx2" if here != "avx2" else "avx512-vnni"
    monkeypatch.setenv(environment.CPU_KERNELS_ENV, other)

    assert main(["predict", str(int8), str(image)]) == 0
    err = capsys.readouterr().err  # a warning: on stderr, as bench's is
    assert err.count("warning: ") == err.count("was verified on 1 other environment") == 1
    assert f"cpu_kernels {here} → {other}" in err and f"tledge verify {int8}" in err

    assert main(["bench", str(int8), "--batch", "1", "--iters", "2", "--warmup", "0", "--out",
                 str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "was verified on 1 other environment" in captured.err
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert rows["eval_images"] == 24 and "parity pack" in rows["eval_set"]  # the pack is bench's accuracy set
    assert rows["rows"][0]["accuracy"] is not None

    import tledge

    with pytest.warns(verdicts.UnverifiedEnvironment, match="not on this one"):
        tledge.load(int8).close()

    assert main(["verify", str(int8)]) in (0, 4)  # now verified under this kernel family as well
    capsys.readouterr()
    assert main(["predict", str(int8), str(image)]) == 0
    assert "was verified on" not in "".join(capsys.readouterr())
    assert main(["info", str(int8)]) == 0
    info = capsys.readouterr().out
    assert "parity verdicts" in info and f", {other} (" in info and f", {here} (" in info

    monkeypatch.setenv(environment.CPU_KERNELS_ENV, here)
    int8.write_bytes(int8.read_bytes())  # same bytes: the verdicts still hold
    assert len(verdicts.read_verdicts(int8)) == 2


def test_a_replaced_artifact_loses_its_verdicts(shipped, tmp_path):
    _, out, _ = shipped
    target = tmp_path / "export"
    shutil.copytree(out, target)
    onnx_path = target / "model.onnx"
    shutil.copyfile(target / "model.int8.onnx", onnx_path)  # another file under the same name
    assert verdicts.read_verdicts(onnx_path) == []
    assert verdicts.unverified_here(onnx_path, "onnxruntime-cpu-fp32") is None


def test_numerics_keys_cpu_and_gpu():
    cpu = {"runtime": "onnxruntime", "runtime_minor": "1.32", "provider": "cpu", "cpu_kernels": "avx2", "gpu": "x"}
    assert environment.numerics_key(cpu) == environment.numerics_key({**cpu, "gpu": "y", "cpu": "other model"})
    assert environment.numerics_key(cpu) != environment.numerics_key({**cpu, "cpu_kernels": "avx512-vnni"})
    gpu = {"runtime": "tensorrt", "runtime_minor": "10.3", "provider": "tensorrt", "gpu": "Orin",
           "compute_capability": "8.7", "tensorrt": "10.3.0", "cpu_kernels": "arm-dotprod"}
    assert environment.numerics_key(gpu) == environment.numerics_key({**gpu, "cpu_kernels": "avx2"})
    assert environment.differences({**gpu, "compute_capability": "8.9", "gpu": "RTX 4090"}, gpu) == [
        "gpu Orin → RTX 4090", "compute_capability 8.7 → 8.9"]
    assert environment.provider_of("onnxruntime-cuda-int8") == "cuda"
    assert environment.provider_of("tensorrt-fp16") == "tensorrt"
    assert environment.runtime_of("torch-cpu-fp32") == "torch"


def test_kernel_family_comes_from_cpuid_and_can_be_overridden(monkeypatch):
    monkeypatch.delenv(environment.CPU_KERNELS_ENV, raising=False)
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as features
    detected = environment.cpu_kernels()
    if features.get("AVX512VNNI"):
        assert detected == "avx512-vnni"
    elif features.get("AVX2"):
        assert detected in ("avx-vnni", "avx512", "avx2")
    monkeypatch.setenv(environment.CPU_KERNELS_ENV, "arm-dotprod")
    assert environment.cpu_kernels() == "arm-dotprod"


# ----------------------------------------------------------------------------------------- engines
def test_an_engine_is_verified_from_the_same_pack_on_the_tensorrt_stand_in(shipped, tmp_path, monkeypatch, capsys):
    """The engine path reads the same pack and records its GPU environment. The stand-in is NOT TensorRT: its
    'engine' computes mean-pooled input @ fixed weights, so the verdict is 'over'; what is checked is that the
    pack's images reach the engine backend and the verdict names the GPU, compute capability and TensorRT."""
    import fake_tensorrt_runtime as fake_trt
    from test_runtime_helpers import write_engine_with_sidecar
    from tledge.card import card_from_onnx

    _, _, device = shipped
    target = tmp_path / "export"
    shutil.copytree(device, target)
    fake_trt.install(monkeypatch)
    card = card_from_onnx(target / "model.onnx")
    engine = write_engine_with_sidecar(target, card, fake_trt.engine_bytes((8, 3, SIZE, SIZE), len(CLASSES)))
    assert main(["verify", str(engine)]) == 3
    assert "over its parity budget" in capsys.readouterr().err
    recorded = verdicts.read_verdicts(engine)[-1]
    env = recorded["environment"]
    assert recorded["backend"] == "tensorrt-fp16" and recorded["kind"] == "fp16" and recorded["images"] == 24
    assert (env["runtime"], env["provider"], env["gpu"], env["compute_capability"]) == (
        "tensorrt", "tensorrt", "Fake Orin", "8.7")
    assert env["tensorrt"] == "10.3.0" and "cpu_kernels" not in dict(environment.numerics_key(env))
    assert sum(c[0] == "execute_async_v3" for c in fake_trt.CALLS) == 3  # 24 pack images, engine max batch 8


def test_an_export_folder_is_verified_artifact_by_artifact(shipped, tmp_path, capsys):
    import tledge

    _, out, device = shipped
    target = tmp_path / "export"
    shutil.copytree(device, target)
    results = tledge.verify(target, record=False)
    assert [r.artifact.name for r in results] == ["model.int8.onnx", "model.onnx"]
    exported = _parity_rows(out)
    assert [r.parity.agreement for r in results] == [exported[n]["agreement"] for n in ("model.int8.onnx", "model.onnx")]
    worst = max(({"within": 0, "inconclusive": 1, "over": 2}[r.outcome], r.exit_code) for r in results)[1]
    assert main(["verify", str(target), "--no-record"]) == worst
    assert capsys.readouterr().out.count("verify: model") == 2
    (target / "model.onnx.verdicts.json").unlink()
    (target / "model.int8.onnx.verdicts.json").unlink()
    assert main(["verify", str(target)]) == 2
    assert "no exported artifact with a parity verdict here" in capsys.readouterr().err
