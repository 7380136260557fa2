import pytest
import torch
from torch import nn

from tledge.errors import TledgeError
from tledge.models.backbones import create_model
from tledge.training.freeze import apply_freeze, parse_policy, set_train_mode


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def one_step(model, frozen):
    set_train_mode(model, frozen)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model(torch.randn(4, 3, 64, 64)).sum()
    loss.backward()
    opt.step()


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_policy_parsing():
    assert parse_policy("stages:3") == ("stages", 3)
    assert parse_policy("LAST:2") == ("last", 2)
    assert parse_policy("all") == ("all", 0)
    for bad in ("stages", "some", "last:x", "stages:-1"):
        with pytest.raises(TledgeError, match="bad --freeze"):
            parse_policy(bad)


def test_all_trains_only_the_head_and_fixes_the_trunk():
    model = create_model("resnet18", 3)
    result = apply_freeze(model, "all")
    assert trainable_names(model) == {"head.0.weight", "head.0.bias"}
    assert result.trainable_params == 512 * 3 + 3
    before = snapshot(model)
    one_step(model, result)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.0.weight", "head.0.bias"}  # BN running stats untouched too


def test_stages_k_freezes_exactly_the_first_k_stages():
    model = create_model("resnet18", 3)
    result = apply_freeze(model, "stages:2")  # stem + layer1 ("freeze conv 1..2")
    names = trainable_names(model)
    assert not any(n.startswith(("features.0.", "features.1.")) for n in names)
    assert any(n.startswith("features.2.") for n in names) and "head.0.weight" in names
    before = snapshot(model)
    one_step(model, result)
    after = model.state_dict()
    for key in before:
        frozen_part = key.startswith(("features.0.", "features.1."))
        if frozen_part:
            assert torch.equal(before[key], after[key]), key  # weights and BN running stats
    assert not torch.equal(before["features.2.0.bn1.running_mean"], after["features.2.0.bn1.running_mean"])
    with pytest.raises(TledgeError, match="only 5 stages"):
        apply_freeze(create_model("resnet18", 3), "stages:6")


def test_last_n_trains_the_last_n_layers_plus_head():
    model = create_model("vgg16", 3)
    apply_freeze(model, "last:3")  # fc7, fc6 and the last conv
    names = trainable_names(model)
    assert names == {"features.4.4.weight", "features.4.4.bias", "pre_logits.0.weight", "pre_logits.0.bias",
                     "pre_logits.3.weight", "pre_logits.3.bias", "head.0.weight", "head.0.bias"}
    model = create_model("mobilenet_v2", 3, width_mult=0.25)
    result = apply_freeze(model, "last:1")  # the final 1x1 conv and its BN
    assert trainable_names(model) == {"features.18.0.weight", "features.18.1.weight", "features.18.1.bias",
                                      "head.0.weight", "head.0.bias"}
    assert all(isinstance(m, nn.BatchNorm2d) for m in result.frozen_modules)
    assert len(result.frozen_modules) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) - 1


def test_none_trains_everything():
    model = create_model("alexnet", 3)
    result = apply_freeze(model, "none")
    assert result.trainable_params == result.total_params and result.frozen_modules == []
