"""Training augmentation on uint8 RGB images (cv2/numpy), applied BEFORE the shared preprocessing.

`augment(image, rng)` returns an image of the same size and dtype; the caller then runs
`preprocess.preprocess_rgb`, exactly as evaluation and every runtime backend do, so augmentation can
change what the model sees in training but never how an image is resized or normalised.
All geometry is one `cv2.warpAffine` (flip, rotation, shear, zoom, shift together) with a reflected
border, so there are no black corners for the model to learn from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from tledge.errors import TledgeError

Augmenter = Callable[..., np.ndarray]


@dataclass(frozen=True)
class AugmentRanges:
    """Random ranges for one augmentation level (0 switches a transform off)."""

    flip: bool = False
    rotate_deg: float = 0.0  # ± degrees
    shift: float = 0.0  # ± fraction of width/height
    shear: float = 0.0  # ± radians (approximately)
    zoom: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0  # ± factor
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # ± fraction of the colour wheel
    erase_prob: float = 0.0  # chance of one random rectangle filled with noise (cutout)
    erase_area: tuple[float, float] = (0.02, 0.2)  # of the image area


LEVELS: dict[str, AugmentRanges] = {
    "none": AugmentRanges(),
    "light": AugmentRanges(flip=True, shift=0.1, zoom=(0.9, 1.1)),
    "standard": AugmentRanges(
        flip=True, rotate_deg=20, shift=0.1, shear=0.1, zoom=(0.8, 1.2), brightness=0.15, contrast=0.15, saturation=0.15
    ),
    "strong": AugmentRanges(
        flip=True,
        rotate_deg=30,
        shift=0.15,
        shear=0.2,
        zoom=(0.7, 1.3),
        brightness=0.3,
        contrast=0.3,
        saturation=0.3,
        hue=0.05,
        erase_prob=0.5,
    ),
}


def make_augmenter(level: str, seed: int | None = None) -> Augmenter:
    """The augmentation for a level name: `augment(image_uint8_rgb, rng=None) -> image_uint8_rgb`.

    Pass `rng` (a numpy Generator) for reproducible results per sample; without it the augmenter uses
    its own generator seeded with `seed`.
    """
    if level not in LEVELS:
        raise TledgeError(f"unknown augmentation level {level!r}; choose one of {', '.join(LEVELS)}")
    ranges = LEVELS[level]
    default_rng = np.random.default_rng(seed)

    def augment(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if level == "none":
            return image
        return apply_augmentation(image, ranges, rng if rng is not None else default_rng)

    augment.level = level  # type: ignore[attr-defined]
    return augment


def apply_augmentation(image: np.ndarray, ranges: AugmentRanges, rng: np.random.Generator) -> np.ndarray:
    """Geometry, then colour, then cutout; the random draws are made in a fixed order (reproducible)."""
    matrix = random_affine(image.shape[0], image.shape[1], ranges, rng)
    if matrix is not None:
        image = cv2.warpAffine(
            image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
    image = colour_jitter(image, ranges, rng)
    if ranges.erase_prob > 0 and rng.random() < ranges.erase_prob:
        image = random_erase(image, ranges.erase_area, rng)
    return image


def random_affine(height: int, width: int, ranges: AugmentRanges, rng: np.random.Generator) -> np.ndarray | None:
    """A 2x3 matrix combining flip, rotation, shear, zoom and shift about the image centre (None: identity)."""
    flip = -1.0 if ranges.flip and rng.random() < 0.5 else 1.0
    angle = math.radians(rng.uniform(-ranges.rotate_deg, ranges.rotate_deg)) if ranges.rotate_deg else 0.0
    shear = rng.uniform(-ranges.shear, ranges.shear) if ranges.shear else 0.0
    zoom = rng.uniform(*ranges.zoom) if ranges.zoom != (1.0, 1.0) else 1.0
    if ranges.shift:
        shift_x, shift_y = rng.uniform(-ranges.shift, ranges.shift, size=2) * (width, height)
    else:
        shift_x = shift_y = 0.0
    if flip == 1.0 and angle == 0.0 and shear == 0.0 and zoom == 1.0 and shift_x == 0.0 and shift_y == 0.0:
        return None
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    scale = np.diag([zoom * flip, zoom, 1.0])
    shear_m = np.array([[1, math.tan(shear), 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    cos, sin = math.cos(angle), math.sin(angle)
    rotate = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], dtype=np.float64)
    back = np.array([[1, 0, cx + shift_x], [0, 1, cy + shift_y], [0, 0, 1]], dtype=np.float64)
    return (back @ rotate @ shear_m @ scale @ to_origin)[:2]


def colour_jitter(image: np.ndarray, ranges: AugmentRanges, rng: np.random.Generator) -> np.ndarray:
    """Hue shift (HSV), then brightness, contrast and saturation factors in one float pass."""
    if ranges.hue:
        shift = int(round(rng.uniform(-ranges.hue, ranges.hue) * 180))  # OpenCV hue runs 0..179
        if shift:
            hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not (ranges.brightness or ranges.contrast or ranges.saturation):
        return image
    brightness = 1.0 + rng.uniform(-ranges.brightness, ranges.brightness)
    contrast = 1.0 + rng.uniform(-ranges.contrast, ranges.contrast)
    saturation = 1.0 + rng.uniform(-ranges.saturation, ranges.saturation)
    out = image.astype(np.float32) * np.float32(brightness)
    mean = np.float32(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).mean())
    out = (out - mean) * np.float32(contrast) + mean
    gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None]
    out = gray + (out - gray) * np.float32(saturation)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def random_erase(image: np.ndarray, area: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Cutout: fill one random rectangle (random area and aspect) with uniform noise."""
    height, width = image.shape[:2]
    target = rng.uniform(*area) * height * width
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    h = int(min(height, max(1, round(math.sqrt(target * aspect)))))
    w = int(min(width, max(1, round(math.sqrt(target / aspect)))))
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    out = image.copy()
    out[top : top + h, left : left + w] = rng.integers(0, 256, size=(h, w, image.shape[2]), dtype=np.uint8)
    return out
