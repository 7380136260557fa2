"""Freezing policies, as transfer-learning studies compare them.

- `none`      full fine-tune
- `all`       feature extractor: only the head trains (the trunk is a fixed function, so its
              features can be cached)
- `stages:K`  freeze the first K stages ("freeze conv 1..K"; a stage is one entry of
              `TledgeNet.features`: a ResNet layer, a VGG block, an AlexNet conv, a MobileNet block)
- `last:N`    only the last N parameterised layers (Conv/Linear) of the trunk, plus the head, train
              ("N trainable layers"); BatchNorm layers train only after the first trainable conv

BatchNorm layers inside frozen parts stay in eval mode with their running statistics unchanged:
`set_train_mode` is what the fit loop calls instead of `model.train()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tledge.errors import TledgeError

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)
LAYER_TYPES = (nn.Conv2d, nn.Linear)


@dataclass
class FreezeResult:
    policy: str
    trainable_params: int
    total_params: int
    frozen_modules: list[nn.Module] = field(default_factory=list, repr=False)  # kept in eval mode

    @property
    def summary(self) -> str:
        share = 100.0 * self.trainable_params / max(self.total_params, 1)
        return (
            f"freeze {self.policy}: {self.trainable_params:,} of {self.total_params:,} parameters train ({share:.1f}%)"
        )


def parse_policy(policy: str) -> tuple[str, int]:
    """'stages:3' → ('stages', 3); 'none'/'all' → (name, 0). Bad syntax is a one-line TledgeError."""
    text = (policy or "none").strip().lower()
    if text in ("none", "all"):
        return text, 0
    kind, sep, count = text.partition(":")
    if kind in ("stages", "last") and sep and count.isdigit() and int(count) >= 0:
        return kind, int(count)
    raise TledgeError(f"bad --freeze {policy!r}; expected none, all, stages:K or last:N (e.g. stages:2, last:3)")


def _trunk_layers(model) -> list[nn.Module]:
    """Parameterised layers of the trunk in forward order (what 'N trainable layers' counts)."""
    return [m for part in (model.features, model.pre_logits) for m in part.modules() if isinstance(m, LAYER_TYPES)]


def apply_freeze(model, policy: str) -> FreezeResult:
    """Set requires_grad per the policy on a TledgeNet; return counts and the modules to keep in eval."""
    kind, count = parse_policy(policy)
    for param in model.parameters():
        param.requires_grad_(True)
    frozen_parts: list[nn.Module] = []
    if kind == "all":
        frozen_parts = [model.features, model.pool, model.pre_logits]
    elif kind == "stages":
        stages = list(model.features)
        if count > len(stages):
            raise TledgeError(f"--freeze stages:{count}: this model has only {len(stages)} stages")
        frozen_parts = stages[:count]
    elif kind == "last":
        layers = _trunk_layers(model)
        if count > len(layers):
            raise TledgeError(f"--freeze last:{count}: this model's trunk has only {len(layers)} parameterised layers")
        _freeze_all_but_last_layers(model, layers, count)
    for part in frozen_parts:
        for param in part.parameters():
            param.requires_grad_(False)

    if kind == "all":
        frozen_modules = frozen_parts  # whole trunk in eval: BN statistics and dropout fixed
    else:
        frozen_modules = [
            m for m in model.modules()
            if isinstance(m, BATCHNORM_TYPES) and not any(p.requires_grad for p in m.parameters())
        ]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return FreezeResult(policy=policy, trainable_params=trainable, total_params=total, frozen_modules=frozen_modules)


def _freeze_all_but_last_layers(model, layers: list[nn.Module], count: int) -> None:
    """Freeze the trunk, then unfreeze its last `count` layers and every BN that follows the first of them."""
    for part in (model.features, model.pre_logits):
        for param in part.parameters():
            param.requires_grad_(False)
    if count == 0:
        return
    trainable = set(map(id, layers[-count:]))
    first_trainable_seen = False
    for module in (m for part in (model.features, model.pre_logits) for m in part.modules()):
        if id(module) in trainable:
            first_trainable_seen = True
        if (id(module) in trainable) or (first_trainable_seen and isinstance(module, BATCHNORM_TYPES)):
            for param in module.parameters(recurse=False):
                param.requires_grad_(True)


def set_train_mode(model, frozen: FreezeResult) -> None:
    """model.train(), except frozen BatchNorm layers (or the whole frozen trunk) stay in eval mode."""
    model.train()
    for module in frozen.frozen_modules:
        module.eval()
