"""Backbone registry: torchvision architectures split into stages + pooling + pre-logits + a fresh head.

Each entry says how to cut its torchvision model into pieces, so there is no if/elif ladder on names
anywhere else. Every tledge model has the same shape (`TledgeNet`): `features` (a Sequential of
stages, the unit of `--freeze stages:K`), `pool`, `pre_logits` (pretrained classifier layers kept with a
linear head, e.g. VGG's fc6/fc7), and `head`. `forward_features` is what the feature cache stores.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tledge.card import ModelCard
from tledge.errors import TledgeError, UnknownBackbone

log = logging.getLogger(__name__)

HEADS = ("linear", "mlp")
MLP_HIDDEN = 512
MLP_DROPOUT = 0.5


class TledgeNet(nn.Module):
    """stages → pool → pre_logits → head. Same layout for every architecture."""

    def __init__(self, stages: list[nn.Module], pool: nn.Module, pre_logits: nn.Module, head: nn.Module):
        super().__init__()
        self.features = nn.Sequential(*stages)
        self.pool = pool
        self.pre_logits = pre_logits
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_logits(self.pool(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one architecture and cut it into TledgeNet pieces."""

    name: str
    builder: str  # torchvision.models function name
    weights_tag: str  # torchvision weight enum member used for `--weights imagenet`
    split: Callable[[nn.Module], tuple[list[nn.Module], nn.Module, nn.Module, int, int]]
    # split(model) -> (stages, pool, pre_logits, pre_logits_dim, conv_dim)


_REGISTRY: dict[str, BackboneSpec] = {}


def register(name: str, builder: str | None = None, weights_tag: str = "IMAGENET1K_V1"):
    def decorator(split_fn):
        _REGISTRY[name] = BackboneSpec(name, builder or name, weights_tag, split_fn)
        return split_fn

    return decorator


def _global_pool() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def _last_linear_in(classifier: nn.Sequential) -> int:
    return [m for m in classifier if isinstance(m, nn.Linear)][-1].in_features


@register("mobilenet_v2")
def _split_mobilenet_v2(model):
    return list(model.features), _global_pool(), nn.Sequential(), model.last_channel, model.last_channel


def _split_mobilenet_v3(model):
    conv_dim = model.classifier[0].in_features
    pre = nn.Sequential(*list(model.classifier)[:-1])  # Linear → Hardswish → Dropout
    return list(model.features), _global_pool(), pre, _last_linear_in(model.classifier), conv_dim


register("mobilenet_v3_small")(_split_mobilenet_v3)
register("mobilenet_v3_large")(_split_mobilenet_v3)


@register("efficientnet_b0")
def _split_efficientnet(model):
    dim = _last_linear_in(model.classifier)
    return list(model.features), _global_pool(), nn.Sequential(), dim, dim


def _split_resnet(model):
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    stages = [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    return stages, _global_pool(), nn.Sequential(), model.fc.in_features, model.fc.in_features


register("resnet18")(_split_resnet)
register("resnet50")(_split_resnet)


def _blocks_ending_in_pool(features: nn.Sequential) -> list[nn.Module]:
    """VGG: one stage per conv block (ends at each MaxPool)."""
    stages, current = [], []
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
    if current:
        stages.append(nn.Sequential(*current))
    return stages


def _one_stage_per_conv(features: nn.Sequential) -> list[nn.Module]:
    """AlexNet: one stage per conv layer (conv + ReLU + its pooling), 'freeze conv 1..K'."""
    stages, current = [], []
    for layer in features:
        if isinstance(layer, nn.Conv2d) and current:
            stages.append(nn.Sequential(*current))
            current = []
        current.append(layer)
    stages.append(nn.Sequential(*current))
    return stages


def _split_classic(model, stage_fn):
    # torchvision's avgpool is adaptive to a fixed grid (7×7 / 6×6), then the fc layers; the linear head
    # keeps the pretrained fc layers as pre_logits; the mlp head uses global pooling over conv features.
    pool = nn.Sequential(model.avgpool, nn.Flatten(1))
    pre = nn.Sequential(*list(model.classifier)[:-1])
    conv_dim = [m for m in model.features if isinstance(m, nn.Conv2d)][-1].out_channels
    return stage_fn(model.features), pool, pre, _last_linear_in(model.classifier), conv_dim


register("vgg16")(lambda m: _split_classic(m, _blocks_ending_in_pool))
register("alexnet")(lambda m: _split_classic(m, _one_stage_per_conv))


def list_backbones(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownBackbone(f"unknown model {name!r}{hint} (available: {', '.join(list_backbones())})")
    return _REGISTRY[name]


def make_head(kind: str, in_dim: int, num_classes: int, dropout: float) -> nn.Module:
    if kind == "linear":
        layers = [nn.Dropout(dropout)] if dropout > 0 else []
        return nn.Sequential(*layers, nn.Linear(in_dim, num_classes))
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_dim, MLP_HIDDEN),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout if dropout > 0 else MLP_DROPOUT),
            nn.Linear(MLP_HIDDEN, num_classes),
        )
    raise TledgeError(f"unknown head {kind!r}; expected one of {', '.join(HEADS)}")


def build_torchvision(name: str, weights: str = "none", **arch_kwargs) -> nn.Module:
    """The plain torchvision model with ImageNet weights (`imagenet`), none, or a state-dict file."""
    import torchvision

    spec = get_spec(name)
    builder = getattr(torchvision.models, spec.builder)
    if weights == "imagenet":
        from tledge.models.imagenet import load_imagenet_model

        return load_imagenet_model(spec, builder, **arch_kwargs)
    model = builder(weights=None, **arch_kwargs)
    if weights not in ("none", "", None):
        state = _read_state_dict(weights)
        if state is not None:
            _load_matching(model, state, Path(weights).name)
    return model


def _read_state_dict(path: str) -> dict | None:
    """A torchvision state dict file → dict; a tledge checkpoint → None (loaded later into TledgeNet)."""
    from tledge.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if "model" in ckpt and "card" in ckpt:
        return None
    return ckpt.get("state_dict", ckpt)


def _load_matching(module: nn.Module, state: dict, source: str) -> None:
    """Load every tensor whose name and shape match; a different classifier size is expected."""
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise TledgeError(f"{source}: none of its tensors fit this architecture; is it for another model?")
    skipped = [k for k in own if k not in usable]
    module.load_state_dict(usable, strict=False)
    if len(skipped) > 4:
        log.warning(f"{source}: {len(skipped)} of {len(own)} tensors did not match and keep their init")


def create_model(
    arch: str,
    num_classes: int,
    weights: str = "none",
    head: str = "linear",
    dropout: float = 0.0,
    **arch_kwargs,
) -> TledgeNet:
    """The single entry point: a TledgeNet for `num_classes`, with pretrained trunk where asked."""
    if head not in HEADS:
        raise TledgeError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    spec = get_spec(arch)
    tv_model = build_torchvision(arch, weights, **arch_kwargs)
    stages, pool, pre_logits, pre_dim, conv_dim = spec.split(tv_model)
    if head == "mlp":
        pool, pre_logits, in_dim = _global_pool(), nn.Sequential(), conv_dim
    else:
        in_dim = pre_dim
    model = TledgeNet(stages, pool, pre_logits, make_head(head, in_dim, num_classes, dropout))
    if weights not in ("none", "imagenet", "", None) and _read_state_dict(weights) is None:
        from tledge.checkpoint import load_checkpoint

        _load_matching(model, load_checkpoint(weights)["model"], Path(weights).name)
    return model


def model_from_card(card: ModelCard) -> TledgeNet:
    """An untrained TledgeNet with the card's architecture (weights come from a checkpoint)."""
    return create_model(card.arch, card.num_classes, "none", card.head, card.dropout, **card.arch_kwargs)
