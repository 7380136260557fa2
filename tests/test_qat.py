"""Quantization-aware fine-tuning (`--qat-epochs`): fake quantization in and out, end to end to QDQ ONNX + parity."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from test_int8_search import _make_run
from tledge.card import card_from_onnx
from tledge.models.restore import load_model
from tledge.exporting.pipeline import export_run
from tledge.exporting.qat import insert_fake_quant


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("qat"), hostile=False)


def test_fake_quant_changes_outputs_a_little_and_is_removed_cleanly(qat_run):
    model, card = load_model(qat_run)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, *card.input_size)
    with torch.no_grad():
        reference = model(x)
        remove = insert_fake_quant(model)
        fake = model(x)
        remove()
        restored = model(x)
    assert remove.weights >= 10 and remove.points >= 10
    assert not torch.equal(fake, reference)
    assert torch.allclose(fake, reference, atol=0.1 * float(reference.abs().max()))
    assert torch.equal(restored, reference)
    assert set(model.state_dict()) == set(before)  # no parametrization left behind
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_qat_end_to_end_exports_qdq_onnx_and_checks_parity(qat_run, tmp_path, log_lines):
    messages = log_lines
    # 24 test images cannot settle a 1-point INT8 gate (inconclusive, exit 4): widened, the numbers are checked below.
    result = export_run(qat_run, "onnx,int8", tmp_path / "o", int8_flavours="both", qat_epochs=1, qat_lr=1e-3,
                        tolerance="int8=100")
    assert any(m.startswith("  qat epoch 1/1") for m in messages)
    for name in ("int8", "int8-trt"):
        path = result.path(name)
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": np.zeros((2, 3, 32, 32), np.float32)})[0]
        assert logits.shape == (2, 3) and np.isfinite(logits).all()
        facts = card_from_onnx(path).extra["int8"]["qat"]
        assert facts["epochs"] == 1 and facts["steps"] >= 1 and facts["train_images"] == 48
        row = next(r for r in result.rows if r.format == name)
        assert row.parity is not None and row.parity.images == 24  # parity computed on the test split
    # the FP32 ONNX stays the trained model (not the fine-tuned copy): exact parity
    assert next(r for r in result.rows if r.format == "onnx").parity.agreement == 100.0
    assert "Quantization-aware fine-tuning" in (tmp_path / "o" / "int8_report.md").read_text()


def test_qat_combines_with_the_budget_search(qat_run, tmp_path):
    # A 100-point budget: whether one of 12 val images flips depends on the CPU's integer kernels.
    result = export_run(qat_run, "int8", tmp_path / "o", qat_epochs=1, qat_lr=1e-3, int8_budget=100.0,
                        int8_methods="minmax", tolerance="int8=100")
    facts = card_from_onnx(result.path("int8")).extra["int8"]
    assert facts["qat"]["epochs"] == 1 and facts["search"]["fits"]


def test_frozen_observer_keeps_its_range_and_clips():
    from tledge.exporting.qat import ActFakeQuant

    fq = ActFakeQuant()
    fq(torch.tensor([0.0, 2.0]))
    assert (fq.lo, fq.hi) == (0.0, 2.0)
    fq.observing = False  # what qat_finetune does after the first epoch
    out = fq(torch.tensor([-1.0, 5.0]))
    assert (fq.lo, fq.hi) == (0.0, 2.0) and float(out.max()) == pytest.approx(2.0) and float(out.min()) == 0.0


def test_qat_images_trains_on_a_fresh_sample_each_epoch(qat_run, monkeypatch):
    from tledge import preprocess
    from tledge.exporting.qat import qat_finetune
    from tledge.splits import Splits

    model, card = load_model(qat_run)
    splits = Splits.load(qat_run)
    seen: list[str] = []
    real_load = preprocess.load_image
    monkeypatch.setattr(preprocess, "load_image", lambda path: (seen.append(str(path)), real_load(path))[1])
    _, facts = qat_finetune(model, card, splits.paths("train"), splits.labels("train"), epochs=2,
                            batch_size=4, images_per_epoch=10)
    assert facts["images_per_epoch"] == 10 and facts["train_images"] == 48
    assert facts["steps"] == 2 * 3  # ceil(10 / 4) batches per epoch
    first, second = seen[:10], seen[10:]
    assert len(second) == 10 and len(set(first)) == 10 and set(first) != set(second)


def test_qat_runs_its_recipe_through_the_training_loop(qat_run, monkeypatch):
    """Each QAT epoch is one call of the training loop's train_one_epoch, with QAT's recipe: the model in
    eval mode (BatchNorm statistics untouched), SGD momentum 0.9, a cosine stepped per batch down to 0,
    activation ranges observed in epoch 1 only; the loss goes down and a second run with the seed repeats it."""
    import math

    from tledge.exporting import qat
    from tledge.splits import Splits
    from tledge.training import loop

    model, card = load_model(qat_run)
    torch.manual_seed(3)
    model.head[-1].reset_parameters()  # the trained model's loss is ~0: a fresh head gives QAT a loss to lower
    splits = Splits.load(qat_run)
    observers, calls = [], []
    real_insert, real_epoch = qat.insert_fake_quant, loop.train_one_epoch

    def recording_insert(module):
        remove = real_insert(module)
        observers.extend(remove.observers)
        return remove

    def recording_epoch(module, loader, optimizer, *args, **kwargs):
        ranges = [(o.lo, o.hi) for o in observers]
        lr_at_start = optimizer.param_groups[0]["lr"]
        stats = real_epoch(module, loader, optimizer, *args, **kwargs)
        calls.append({"training": module.training, "optimizer": optimizer, "batches": len(loader),
                      "lr": (lr_at_start, optimizer.param_groups[0]["lr"]),
                      "observing": {o.observing for o in observers},
                      "ranges_moved": [(o.lo, o.hi) for o in observers] != ranges})
        return stats

    monkeypatch.setattr(qat, "insert_fake_quant", recording_insert)
    monkeypatch.setattr(loop, "train_one_epoch", recording_epoch)
    args = (model, card, splits.paths("train"), splits.labels("train"))
    qmodel, facts = qat.qat_finetune(*args, epochs=3, lr=1e-2, batch_size=20, seed=0)

    assert len(calls) == 3 and [c["batches"] for c in calls] == [3, 3, 3]  # 48 images in batches of 20
    assert facts["steps"] == 9 and facts["observers_frozen_after_epoch"] == 1
    assert not any(c["training"] for c in calls)
    sgd = calls[0]["optimizer"]
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    cosine = [0.5e-2 * (1 + math.cos(math.pi * step / 9)) for step in range(10)]
    for epoch, call in enumerate(calls):
        assert call["lr"] == pytest.approx((cosine[3 * epoch], cosine[3 * epoch + 3]), rel=1e-6, abs=1e-12)
    assert calls[0]["observing"] == {True} and calls[0]["ranges_moved"]
    assert calls[1]["observing"] == calls[2]["observing"] == {False}
    assert not calls[1]["ranges_moved"] and not calls[2]["ranges_moved"]
    losses = [row["loss"] for row in facts["history"]]
    assert losses[2] < 0.5 * losses[0], losses

    buffers = dict(model.named_buffers())
    assert {name: b for name, b in qmodel.named_buffers()}.keys() == buffers.keys()
    assert all(torch.equal(b, buffers[name]) for name, b in qmodel.named_buffers())  # BatchNorm frozen
    weights = dict(model.named_parameters())
    assert any(not torch.equal(p, weights[name]) for name, p in qmodel.named_parameters())

    monkeypatch.undo()
    again, _ = qat.qat_finetune(*args, epochs=3, lr=1e-2, batch_size=20, seed=0)
    assert all(torch.equal(p, again.state_dict()[name]) for name, p in qmodel.state_dict().items())
