"""The cached frozen prefix: ONNX Runtime's outputs equal PyTorch's, stages:K trains like the uncached run,
mirrored views, and the fallback to PyTorch when the fast engine disagrees."""

import pytest
import torch

from tledge.checkpoint import load_checkpoint
from tledge.models.backbones import create_model
from tledge.training.config import TrainConfig
from tledge.models.device import resolve_device
from tledge.training.fit import train_run
from tledge.training.prefix import (MAX_REL_DIFF, FrozenPrefix, PrefixEngine, TrainableSuffix, ViewSampler,
                                 cache_prefix, choose_engine, onnxruntime_engine, relative_difference)

TINY = dict(model="mobilenet_v2", arch_kwargs={"width_mult": 0.25}, weights="none", img_size=32, batch_size=8,
            optimizer="adam", lr=1e-2, scheduler="cosine", workers=0, augment="none", seed=0, epochs=3)


def _model():
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 3, weights="none", width_mult=0.25)
    return model.eval()


@pytest.mark.parametrize("stages", [None, 4, 14])
def test_onnxruntime_prefix_equals_pytorch(stages):
    model = _model()
    batch = torch.randn(5, 3, 48, 48)
    prefix = FrozenPrefix(model, stages)
    with torch.inference_mode():
        expected = prefix(batch)
    got = onnxruntime_engine(prefix, batch).run(batch)
    assert got.shape == expected.shape
    assert relative_difference(expected, got) <= MAX_REL_DIFF


def test_suffix_after_prefix_is_the_whole_network():
    model = _model()
    batch = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        for stages in (None, 1, 7, len(model.features)):
            split = TrainableSuffix(model, stages)(FrozenPrefix(model, stages)(batch))
            assert torch.allclose(split, model(batch), atol=1e-5)


def test_engine_that_disagrees_is_dropped_for_pytorch(monkeypatch, log_lines):
    model = _model()
    batch = torch.randn(4, 3, 32, 32)
    wrong = PrefixEngine("onnxruntime-cpu", lambda x: FrozenPrefix(model, None)(x) * 1.01)
    monkeypatch.setattr("tledge.training.prefix.onnxruntime_engine", lambda prefix, example: wrong)
    lines = log_lines
    engine = choose_engine(FrozenPrefix(model, None), batch, resolve_device("cpu"))
    assert engine.name == "pytorch"
    assert "differs from PyTorch by 1.0e-02" in lines[0]


def test_mirrored_view_is_the_prefix_of_the_mirrored_image():
    model = _model()
    images = torch.randn(6, 3, 32, 32)
    labels = torch.arange(6) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=4)
    cached, engine, _ = cache_prefix(model, 3, loader, resolve_device("cpu"), views=2, dtype="float16")
    outputs = cached.tensors[0]
    assert outputs.shape[:2] == (6, 2) and outputs.dtype == torch.float16
    with torch.inference_mode():
        plain = FrozenPrefix(model, 3)(images)
        mirrored = FrozenPrefix(model, 3)(torch.flip(images, dims=[3]))
    assert relative_difference(plain, outputs[:, 0].float()) < 2e-3  # float16 storage
    assert relative_difference(mirrored, outputs[:, 1].float()) < 2e-3
    assert not torch.allclose(outputs[:, 0], outputs[:, 1])
    first, again, other = ViewSampler(cached, 0, 1), ViewSampler(cached, 0, 1), ViewSampler(cached, 0, 2)
    assert torch.equal(first.choice, again.choice)  # same (seed, epoch): same views (resume repeats)
    assert set(first.choice.tolist() + other.choice.tolist()) == {0, 1}
    view, label = first[2]
    assert torch.equal(view, outputs[2, int(first.choice[2])]) and label == labels[2]


def _no_fast_engine(*args, **kwargs):
    raise RuntimeError("disabled for this test")


def test_stage_prefix_cache_trains_like_the_uncached_run(make_image_folder, tmp_path, monkeypatch, log_lines):
    """stages:K with --augment none: the first K stages run once, and the epochs, checkpoint and test
    answers are those of the run that recomputes them every epoch. The mechanics are compared exactly:
    PyTorch engine and float32 storage here, because a tiny randomly initialised network amplifies even
    1e-6 differences (ONNX Runtime's and float16's error bounds are tested above)."""
    monkeypatch.setattr("tledge.training.prefix.onnxruntime_engine", _no_fast_engine)
    monkeypatch.setattr("tledge.training.epochs.STAGE_CACHE_DTYPE", "float32")
    data = make_image_folder(classes=("red", "green", "blue"), per_class=20, size=32)
    lines = log_lines
    common = dict(data=str(data), project=str(tmp_path / "runs"), freeze="stages:10", **TINY)
    cached = train_run(TrainConfig(name="cached", **common))
    plain = train_run(TrainConfig(name="plain", cache_features=False, **common))
    assert any("outputs of the first 10 stages cached" in line and "(pytorch)" in line for line in lines)
    for a, b in zip(cached.history, plain.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_acc"] == b["val_acc"]
    assert cached.test_metrics["accuracy"] == plain.test_metrics["accuracy"]
    state = load_checkpoint(cached.run_dir / "best.pt")["model"]
    assert set(state) == set(load_checkpoint(plain.run_dir / "best.pt")["model"])
    frozen_key = "features.0.0.weight"  # frozen: identical in both runs and to the seeded initialisation
    assert torch.equal(state[frozen_key], load_checkpoint(plain.run_dir / "best.pt")["model"][frozen_key])
