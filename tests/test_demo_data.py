"""The built-in demo data set shipped in tledge/data/fashion_mnist_sample."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tledge.data import DEMO_DATA_CLASSES, DEMO_DATA_LICENSE, DEMO_DATA_README, demo_data_dir

PER_CLASS = 60
MAX_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def root() -> Path:
    return demo_data_dir()


def class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_ten_class_folders_named_as_fashion_mnist(root):
    assert [p.name for p in class_dirs(root)] == sorted(DEMO_DATA_CLASSES)
    assert len(DEMO_DATA_CLASSES) == 10


def test_sixty_pngs_per_class_and_nothing_else(root):
    for folder in class_dirs(root):
        files = sorted(folder.iterdir())
        assert len(files) == PER_CLASS, folder.name
        assert all(f.is_file() and f.suffix == ".png" for f in files), folder.name


def test_every_image_decodes_to_28x28_grayscale(root):
    for path in sorted(root.glob("*/*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image is not None, path
        assert image.shape == (28, 28), path
        assert image.dtype == np.uint8, path
        assert image.max() > image.min(), f"{path} is blank"


def test_file_names_are_distinct_test_set_indices(root):
    indices = [int(p.stem) for p in root.glob("*/*.png")]
    assert len(indices) == len(set(indices)) == 10 * PER_CLASS
    assert all(0 <= i < 10_000 for i in indices)


def test_total_size_well_under_two_megabytes(root):
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < MAX_BYTES, f"{total} bytes"


def test_licence_and_attribution_present(root):
    assert DEMO_DATA_LICENSE.parent == root
    text = DEMO_DATA_LICENSE.read_text(encoding="utf-8")
    assert "Zalando SE" in text
    assert "Permission is hereby granted, free of charge" in text
    assert "The above copyright notice and this permission notice shall be included" in text
    readme = DEMO_DATA_README.read_text(encoding="utf-8")
    assert "Xiao" in readme and "Rasul" in readme and "Vollgraf" in readme
    assert "t10k" in readme
