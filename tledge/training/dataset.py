"""torch Dataset and DataLoader for training: decode → augment → the shared preprocessing.

Reproducibility does not depend on the number of workers: each sample's augmentation draws from
`np.random.default_rng([seed, epoch, index])`, and the shuffle order comes from a torch.Generator seeded
with (seed, epoch). So a run resumed at epoch e sees exactly the batches it would have seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tledge.card import ModelCard
from tledge.errors import TledgeError
from tledge.preprocess import load_image, preprocess_rgb
from tledge.training.augment import make_augmenter


class ImageDataset(Dataset):
    """(CHW float32 tensor, class index) pairs; `augment_level="none"` is the evaluation transform."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int],
        card: ModelCard,
        augment_level: str = "none",
        seed: int = 0,
    ):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths = [Path(p) for p in paths]
        self.labels = [int(label) for label in labels]
        self.card = card
        self.augment_level = augment_level
        self.augment = make_augmenter(augment_level)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentation draws `__getitem__` makes (call before building a loader)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        image = load_image(path)
        if image is None:
            raise TledgeError(f"cannot decode {path} any more (changed since the data scan?); rerun training")
        if self.augment_level != "none":
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            image = self.augment(image, rng)
        return torch.from_numpy(preprocess_rgb(image, self.card)), self.labels[index]


def loader_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffle generator for one epoch: a pure function of (seed, epoch), so resuming repeats it."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    shard=None,
) -> DataLoader:
    """A DataLoader for one epoch (build a new one each epoch; workers are not persistent).

    `shard` (a DistInfo) gives each torchrun rank its part of the epoch.
    No worker_init_fn touching cv2: calling `cv2.setNumThreads` in a forked worker deadlocks on the
    thread pool inherited from the parent.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if shard is not None and shard.enabled:  # torchrun: this rank's share of the epoch (tledge.training.distributed)
        from tledge.training.distributed import ShardedSampler

        sampler = ShardedSampler(len(dataset), shard, loader_generator(seed, epoch) if shuffle else None)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=pin_memory, drop_last=drop_last, persistent_workers=False)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=loader_generator(seed, epoch),
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=False,
    )

