"""Feature cache for `--freeze all`: the trunk is a fixed function, so run it once per image and let
every later epoch train only the head on the stored vectors."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from tledge.progress import progress_bar
from tledge.train.device import DeviceSetup


@torch.inference_mode()
def extract_features(model, loader, setup: DeviceSetup, label: str = "features") -> TensorDataset:
    """(features, labels) of every item in `loader`, computed by the frozen trunk in eval mode."""
    model.eval()
    feats, labels = [], []
    bar = progress_bar(len(loader.dataset), label, unit="img")
    for inputs, targets in loader:
        inputs = inputs.to(setup.device, non_blocking=setup.pin_memory)
        if setup.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with setup.autocast():
            out = model.forward_features(inputs)
        feats.append(out.float().cpu())
        labels.append(targets)
        bar.update(int(targets.shape[0]))
    bar.close()
    return TensorDataset(torch.cat(feats), torch.cat(labels))


def feature_loader(features: TensorDataset, batch_size: int, shuffle: bool, seed: int, epoch: int,
                   shard=None) -> DataLoader:
    """Batches of cached features in exactly the order the image loader would give for (seed, epoch),
    so a cached run trains the head on the same batches as an uncached one."""
    from tledge.train.dataset import loader_generator, make_loader

    if shard is not None and shard.enabled:
        return make_loader(features, batch_size, shuffle, seed, epoch, shard=shard)
    generator = loader_generator(seed, epoch) if shuffle else None
    return DataLoader(features, batch_size=batch_size, shuffle=shuffle, generator=generator)
