"""Cached frozen-prefix outputs shared between the runs of a sweep (and its worker processes).

Cells that differ only in what trains after the frozen part (learning rate, optimizer, epochs, head …) cache
the same prefix outputs; the first cell computes them, the others load them. Each split's outputs are one
file, FOLDER/<key>.pt, where the key hashes exactly what determines them: the prefix's own weights and
buffers, the cut (stages), the split's images and labels in loader order (with the data's fingerprint), the
input size and resize, the views, the stored dtype and the device type and precision that compute them.

The file is written atomically (tledge.checkpoint.save_checkpoint), so a reader never sees half of it; the
computing process holds an flock on FOLDER/<key>.lock, so a second worker waits for it and then loads the
file (or, when the first died without writing it, computes it itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Callable

import torch

FOLDER = "trunk_cache"  # inside a sweep folder


def prefix_modules(model, stages: int | None) -> list[torch.nn.Module]:
    """The modules a FrozenPrefix runs: the first `stages` stages, or the whole trunk with pool and pre_logits."""
    if stages is None:
        return [model.features, model.pool, model.pre_logits]
    return [model.features[:stages]]


def feature_key(model, stages: int | None, dataset, views: int, dtype: str, setup, fingerprint: str) -> str:
    """sha256 of what the cached outputs of `dataset` depend on (see the module doc)."""
    digest = hashlib.sha256()
    items = [[str(path), int(label)] for path, label in zip(dataset.paths, dataset.labels)]
    card = dataset.card
    digest.update(json.dumps({
        "stages": stages, "views": views, "dtype": dtype, "items": items, "fingerprint": fingerprint,
        "input_size": list(card.input_size), "resize": card.resize, "augment": dataset.augment_level,
        "device": setup.device.type, "amp": str(setup.amp_dtype), "channels_last": setup.channels_last,
    }, sort_keys=True).encode())
    for index, module in enumerate(prefix_modules(model, stages)):
        for name, tensor in module.state_dict().items():
            digest.update(f"{index}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                          if tensor.numel() else b"")
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_features(folder: Path, key: str, compute: Callable[[], tuple]):
    """(TensorDataset, engine name, seconds, reused): FOLDER/<key>.pt when it exists (another cell, or another
    worker, computed it), else `compute()` (→ dataset, engine, seconds) saved there for the next cell."""
    from torch.utils.data import TensorDataset

    from tledge.checkpoint import save_checkpoint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pt"
    with _locked(folder / f"{key}.lock"):  # a second worker waits here for the first to finish writing
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            return (TensorDataset(state["outputs"], state["labels"]), state["engine"], float(state["seconds"]),
                    True)
        dataset, engine, seconds = compute()
        outputs, labels = dataset.tensors
        save_checkpoint(path, {"outputs": outputs, "labels": labels, "engine": engine, "seconds": seconds})
    return dataset, engine, seconds, False
