"""TrainConfig: every training choice in one plain dataclass, saved in the run (config.json) and in
checkpoints, so a run can be resumed or reproduced without the command line that started it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    data: str
    model: str = "mobilenet_v2"
    weights: str = "imagenet"  # imagenet | none | PATH
    head: str = "linear"
    dropout: float = 0.0
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    freeze: str = "none"
    img_size: int = 224
    resize: str = "stretch"
    augment: str = "standard"
    epochs: int = 15
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer's usual default
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"
    step_size: int = 7
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    patience: int = 0  # 0: no early stopping
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    device: str = "auto"
    workers: int | None = None  # None: chosen from the CPU count
    amp: bool = True  # only on CUDA
    sync_bn: bool = False  # torchrun on CUDA: SyncBatchNorm across ranks
    cache_features: bool = True  # no augmentation + freeze all / stages:K: cache the frozen prefix's outputs
    cache_views: int = 1  # 2: also cache each train image's mirror; each epoch uses one view per image
    kfold: int = 0
    project: str = "runs"
    name: str | None = None
    exist_ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["split"] = list(self.split)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "split" in values:
            values["split"] = tuple(values["split"])
        return cls(**values)
