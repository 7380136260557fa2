"""Training augmentation (tledge/training/augment.py): shape, dtype, determinism, levels."""

from __future__ import annotations

import numpy as np
import pytest

from tledge.errors import TledgeError
from tledge.training.augment import LEVELS, make_augmenter


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    out = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    out[5:20, 5:25] = (220, 40, 40)
    return out


def test_none_is_identity(image):
    augment = make_augmenter("none")
    out = augment(image, np.random.default_rng(1))
    assert out is image or np.array_equal(out, image)


@pytest.mark.parametrize("level", ["light", "standard", "strong"])
def test_levels_keep_shape_and_dtype_and_change_pixels(image, level):
    augment = make_augmenter(level)
    outs = [augment(image, np.random.default_rng(seed)) for seed in range(6)]
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    assert any(not np.array_equal(out, image) for out in outs)
    assert image[5, 5].tolist() == [220, 40, 40]  # input left untouched


@pytest.mark.parametrize("level", ["light", "standard", "strong"])
def test_deterministic_per_rng_seed(image, level):
    augment = make_augmenter(level)
    a = augment(image, np.random.default_rng([7, 0, 3]))
    b = augment(image, np.random.default_rng([7, 0, 3]))
    c = augment(image, np.random.default_rng([7, 1, 3]))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_seed_argument_used_without_rng(image):
    first = make_augmenter("standard", seed=5)
    second = make_augmenter("standard", seed=5)
    assert np.array_equal(first(image), second(image))


def test_grayscale_looking_and_tiny_images(image):
    augment = make_augmenter("strong")
    tiny = image[:3, :3].copy()
    assert augment(tiny, np.random.default_rng(0)).shape == (3, 3, 3)
    flat = np.full((16, 16, 3), 128, np.uint8)
    out = augment(flat, np.random.default_rng(0))
    assert out.shape == flat.shape


def test_standard_flip_happens_sometimes():
    """A left-right asymmetric image is mirrored in roughly half the draws."""
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, :10] = 255
    augment = make_augmenter("light")
    left_bright = [augment(image, np.random.default_rng(s))[:, :5].mean() > 128 for s in range(40)]
    assert 5 < sum(left_bright) < 35


def test_unknown_level_lists_levels():
    with pytest.raises(TledgeError, match="unknown augmentation level 'wild'.*none, light, standard, strong"):
        make_augmenter("wild")
    assert list(LEVELS) == ["none", "light", "standard", "strong"]
