"""TrainConfig: every training option in one typed dataclass. Each field carries its help, range and CLI
spelling (tledge.options), so `tledge train`, `tledge.train(...)`, sweep grids and docs/reference.md's table come from
here. Ranges are checked when a config is made; it is saved in the run (config.json) and in checkpoints,
so a run can be resumed or reproduced without the command line that started it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from tledge.errors import TledgeError
from tledge.options import option, validate
from tledge.devices import device_problem
from tledge.training.tracking import parse_track, track_problem

OPTIMIZER_LR = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2, "adadelta": 1.0}  # each optimizer's usual rate

FREEZE_HELP = ("none (full fine-tune), all (feature extractor: only the head trains; features are cached), "
               "stages:K (freeze the first K stages), last:N (only the last N Conv/Linear layers + head train).")
OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
SCHEDULERS = ("cosine", "step", "none")
AUGMENT_LEVELS = ("none", "light", "standard", "strong")
RESIZE_MODES = ("stretch", "center_crop")
HEADS = ("linear", "mlp")


def parse_split(value: Any) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' or [0.8, 0.1, 0.1] → (0.8, 0.1, 0.1)."""
    parts = [p for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
    try:
        split = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        split = ()
    if len(split) != 3:
        raise TledgeError(f"bad --split {value!r}; expected three fractions like 0.8,0.1,0.1")
    return split  # type: ignore[return-value]


@dataclass
class TrainConfig:
    data: str = option(help="Image folder: class subfolders, or train/val/test folders of them.", cli=False)
    model: str = option("mobilenet_v2", "Backbone: mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, resnet18, "
                        "resnet50, vgg16, alexnet, efficientnet_b0 (tledge weights list).")
    weights: str = option("imagenet", "imagenet (torchvision's weights, cache or download), none, or a PATH: a "
                          "torchvision state dict or a tledge checkpoint.")
    head: str = option("linear", "Classifier head: linear, or mlp (pool → 512 → ReLU → dropout 0.5 → classes).",
                       choices=HEADS)
    dropout: float = option(0.0, "Dropout before the classifier.", min=0, below=1)
    width_mult: float | None = option(None, "MobileNetV2 width multiplier (tiny models; no ImageNet weights).",
                                      above=0, max=4)
    arch_kwargs: dict[str, Any] = option(help="Extra torchvision builder arguments.", factory=dict, cli=False)
    freeze: str = option("none", FREEZE_HELP)
    img_size: int = option(224, "Input size in px (square).", min=8, max=4096)
    resize: str = option("stretch", "stretch, or center_crop (ImageNet 0.875).", choices=RESIZE_MODES)
    augment: str = option("standard", "Training augmentation: none, light (flip, small shift/zoom), standard (±20° "
                          "rotation, shifts, shear, zoom, flip, mild colour jitter), strong (+ hue, cutout).",
                          choices=AUGMENT_LEVELS)
    epochs: int = option(15, "Training epochs.", min=1)
    batch_size: int = option(32, "Images per batch (a training step; an eval forward pass).", min=1)
    optimizer: str = option("adam", "Optimizer (sgd uses Nesterov momentum).", choices=OPTIMIZERS)
    lr: float | None = option(None, "Learning rate (unset: the optimizer's usual rate, adam/adamw 1e-3, sgd 1e-2, "
                              "adadelta 1.0).", above=0)
    weight_decay: float = option(0.0, "L2 weight decay.", min=0)
    momentum: float = option(0.9, "SGD momentum (Nesterov when > 0).", min=0, below=1)
    scheduler: str = option("cosine", "Learning-rate schedule: cosine (with linear warm-up), step, none.",
                           choices=SCHEDULERS)
    step_size: int = option(7, "StepLR period in epochs.", min=1)
    gamma: float = option(0.1, "StepLR decay.", above=0, max=1)
    warmup_epochs: int = option(0, "Linear warm-up before cosine.", min=0)
    label_smoothing: float = option(0.0, "Cross-entropy label smoothing.", min=0, below=1)
    patience: int = option(0, "Early stop after N epochs without a better val accuracy (best epoch restored; 0: off).",
                        min=0)
    split: tuple[float, float, float] = option((0.8, 0.1, 0.1), "train,val,test fractions when DATA has no split "
                                               "folders.", parse=parse_split)
    seed: int = option(0, "Random seed (splits, order, augmentation).", min=0)
    device: str = option("auto", "auto, cpu, cuda or cuda:N. CUDA uses AMP (bf16 on compute capability >= 8.0, "
                        "else fp16 + GradScaler), channels_last and pinned memory.", check=device_problem)
    workers: int | None = option(None, "Data-loading processes (unset: CPU count - 1, at most 4).", min=0)
    amp: bool = option(True, "Train in float32 on CUDA too.", flag="--no-amp", negate=True)
    sync_bn: bool = option(False, "Under torchrun on CUDA: synchronise BatchNorm statistics across GPUs.")
    cache_features: bool = option(True, "Recompute the frozen prefix every epoch instead of caching its outputs "
                                  "(cached: --augment none with --freeze all or stages:K).", flag="--no-cache",
                                  negate=True)
    cache_views: int = option(1, "Cached views per train image: 2 adds its mirror image; each epoch uses one view "
                             "per image.", min=1, max=2)
    kfold: int = option(0, "Stratified K-fold over train+val (0: off, else at least 2): runs/NAME/foldK, "
                       "kfold.json/kfold.md with mean ± std; the best fold's model becomes the run's best.pt.", min=0)
    project: str = option("runs", "Folder that holds run folders.")
    name: str | None = option(None, "Run folder name (default exp, exp2, ...).")
    exist_ok: bool = option(False, "Reuse an existing --name folder.")
    track: tuple[str, ...] = option((), "Record the run in tensorboard and/or mlflow (comma list; pip install "
                                    "'tledge[track]'): RUN/tensorboard, an MLflow store in RUN/mlruns or "
                                    "MLFLOW_TRACKING_URI.", parse=parse_track, check=track_problem, show="off",
                                    metavar="NAMES")

    def learning_rate(self) -> float:
        """--lr, or unset: the optimizer's usual rate."""
        return self.lr if self.lr is not None else OPTIMIZER_LR[self.optimizer]

    def loader_workers(self) -> int:
        """--workers, or unset: leave one core for the training step (at most 4 loader processes)."""
        import os

        return self.workers if self.workers is not None else max(0, min(4, (os.cpu_count() or 1) - 1))

    def __post_init__(self) -> None:
        if isinstance(self.split, (list, str)):
            self.split = parse_split(self.split)
        self.track = parse_track(self.track)
        if self.data is None:
            raise TledgeError("train needs DATA (an image folder)")
        self.data = str(self.data)  # a Path from Python callers
        self.project = str(self.project)
        self.arch_kwargs = dict(self.arch_kwargs or {})
        if self.width_mult is None and "width_mult" in self.arch_kwargs:
            self.width_mult = self.arch_kwargs["width_mult"]
        validate(self)
        if self.width_mult is not None:
            self.arch_kwargs["width_mult"] = float(self.width_mult)
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.kfold == 1:
            raise TledgeError("--kfold 1: must be 0 (off) or at least 2")
        if any(s < 0 for s in self.split) or abs(sum(self.split) - 1.0) > 1e-6 or self.split[0] <= 0:
            raise TledgeError(f"--split {','.join(f'{s:g}' for s in self.split)}: expected three fractions ≥ 0 "
                              "that sum to 1, with a train part above 0")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["split"] = list(self.split)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Also reads config.json of older runs (unknown keys are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "split" in values:
            values["split"] = tuple(values["split"])
        if "track" in values:
            values["track"] = tuple(values["track"])
        return cls(**values)


TrainOptions = TrainConfig  # the name the public API documents


@dataclass
class ResumeOptions:
    """`tledge train --resume RUN [--force]`: continue a run with its saved TrainConfig (no other options)."""

    resume: str | None = option(None, "Continue an interrupted run folder (RUN/foldK: that fold of a k-fold run "
                                "only).", metavar="RUN")
    force: bool = option(False, "With --resume: continue even though the data folder changed since the run "
                         "started.")

    def __post_init__(self) -> None:
        if self.resume is not None:
            self.resume = os.fspath(self.resume)  # a Path or Run from Python callers
        validate(self)
        if self.force and self.resume is None:
            raise TledgeError("--force applies to --resume only (it accepts changed data when resuming)")
