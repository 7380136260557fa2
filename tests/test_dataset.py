"""torch Dataset/DataLoader for training (tledge/training/dataset.py): parity, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tledge.card import ModelCard
from tledge.errors import TledgeError
from tledge.preprocess import preprocess_file
from tledge.datasets.folders import build_splits
from tledge.training.dataset import ImageDataset, make_loader


@pytest.fixture
def data(make_image_folder):
    root = make_image_folder(per_class=6, size=40, odd_files=True)
    splits, _ = build_splits(root)
    card = ModelCard(arch="tiny", class_names=splits.class_names, input_size=(24, 24))
    return splits, card


def all_items(splits):
    paths = [p for s in ("train", "val", "test") for p in splits.paths(s)]
    labels = [label for s in ("train", "val", "test") for label in splits.labels(s)]
    return paths, labels


@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
def test_eval_path_matches_shared_preprocessing_exactly(data, resize):
    splits, card = data
    card = card.replace(resize=resize)
    paths, labels = all_items(splits)
    dataset = ImageDataset(paths, labels, card, augment_level="none")
    for i in range(len(dataset)):  # includes the gray, RGBA and 16-bit PNGs
        tensor, label = dataset[i]
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (3, 24, 24)
        assert label == labels[i]
        assert np.array_equal(tensor.numpy(), preprocess_file(paths[i], card))


@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
def test_training_eval_tensor_equals_the_runtime_tensor(data, resize):
    """What training evaluates on is bit for bit what `tledge predict` / tledge.load() feed the backend: the
    runtime's file source (decode pool + the card's preprocessor) against the training dataset."""
    from tledge.runtime.predict import preprocessor
    from tledge.runtime.sources import ImageFilesSource

    splits, card = data
    card = card.replace(resize=resize)
    paths, labels = all_items(splits)
    dataset = ImageDataset(paths, labels, card, augment_level="none")
    with ImageFilesSource("files", paths, workers=2, prefetch=4, prepare=preprocessor(card)) as source:
        items = list(source)
    assert sorted(item.index for item in items) == list(range(len(paths)))
    for item in items:
        assert item.tensor is not None and item.tensor.dtype == np.float32
        assert np.array_equal(dataset[item.index][0].numpy(), item.tensor), paths[item.index]


def test_augmented_items_deterministic_per_seed_epoch_index(data):
    splits, card = data
    paths, labels = splits.paths("train"), splits.labels("train")
    dataset = ImageDataset(paths, labels, card, augment_level="strong", seed=3)
    first = dataset[2][0]
    assert torch.equal(first, ImageDataset(paths, labels, card, "strong", seed=3)[2][0])
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[2][0])
    dataset.set_epoch(0)
    assert torch.equal(first, dataset[2][0])
    assert not torch.equal(first, ImageDataset(paths, labels, card, "strong", seed=4)[2][0])


def test_unknown_augment_level(data):
    splits, card = data
    with pytest.raises(TledgeError, match="unknown augmentation level"):
        ImageDataset(splits.paths("train"), splits.labels("train"), card, augment_level="max")


def test_image_broken_after_scan_names_it(data):
    splits, card = data
    paths, labels = splits.paths("train"), splits.labels("train")
    paths[0].write_bytes(b"gone")
    dataset = ImageDataset(paths, labels, card)
    with pytest.raises(TledgeError, match=paths[0].name):
        dataset[0]


def loader_order(dataset, seed, epoch, **kwargs):
    loader = make_loader(dataset, batch_size=4, shuffle=True, seed=seed, epoch=epoch, **kwargs)
    return torch.cat([labels_and_ids for _, labels_and_ids in loader]).tolist()


class IndexDataset(torch.utils.data.Dataset):
    """Returns its own index, so loader order is visible."""

    def __init__(self, n):
        self.n = n
        self.epoch = None

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.zeros(1), i


def test_loader_order_reproducible_per_seed_and_epoch():
    dataset = IndexDataset(30)
    a = loader_order(dataset, seed=0, epoch=2)
    assert dataset.epoch == 2
    assert a == loader_order(dataset, seed=0, epoch=2)
    assert sorted(a) == list(range(30))
    assert a != loader_order(dataset, seed=0, epoch=3)
    assert a != loader_order(dataset, seed=1, epoch=2)


def test_loader_unshuffled_and_drop_last():
    dataset = IndexDataset(10)
    loader = make_loader(dataset, batch_size=4, shuffle=False, seed=0, epoch=0, drop_last=True)
    assert [ids.tolist() for _, ids in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_workers_give_the_same_batches(data):
    splits, card = data
    dataset = ImageDataset(splits.paths("train"), splits.labels("train"), card, "standard", seed=1)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(dataset, batch_size=5, shuffle=True, seed=1, epoch=4, workers=workers)
        batches[workers] = [(x.clone(), y.clone()) for x, y in loader]
    assert len(batches[0]) == len(batches[2])
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(y0, y2) and torch.equal(x0, x2)
