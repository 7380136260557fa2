"""Batches of cached prefix outputs (see prefix.py) in exactly the order the image loader would give for
(seed, epoch), so a cached run trains on the same batches as an uncached one."""

from __future__ import annotations

from torch.utils.data import DataLoader

from tledge.training.prefix import ViewSampler


def feature_loader(features, batch_size: int, shuffle: bool, seed: int, epoch: int, shard=None,
                   views: int = 1) -> DataLoader:
    """`views` > 1: `features` holds several views per image ([N, views, ...]); each epoch uses one of them
    per image, chosen from (seed, epoch)."""
    from tledge.training.dataset import loader_generator, make_loader

    dataset = ViewSampler(features, seed, epoch) if views > 1 else features
    if shard is not None and shard.enabled:
        return make_loader(dataset, batch_size, shuffle, seed, epoch, shard=shard)
    generator = loader_generator(seed, epoch) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
