"""Data shipped inside the tledge package.

The built-in demo data set is a balanced sample of real Fashion-MNIST test images (600 images, 60 for each
of the 10 classes, 28x28 grayscale PNG) in ImageFolder layout, ``<class_name>/<index>.png``. Fashion-MNIST is
copyright 2017 Zalando SE and MIT-licensed; its licence (``DEMO_DATA_LICENSE``) must travel with the images.
See ``fashion_mnist_sample/README.md`` for its origin and ``scripts/make_demo_data.py`` to regenerate it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_DATA_CLASSES", "DEMO_DATA_DIR", "DEMO_DATA_LICENSE", "DEMO_DATA_README", "demo_data_dir"]

# The data files are installed as plain files next to this module (setuptools package-data, not zipped),
# so a filesystem path is always available.
DEMO_DATA_DIR: Path = Path(__file__).resolve().parent / "fashion_mnist_sample"
DEMO_DATA_LICENSE: Path = DEMO_DATA_DIR / "LICENSE.txt"
DEMO_DATA_README: Path = DEMO_DATA_DIR / "README.md"

# Class folder names, in Fashion-MNIST label order (label i -> DEMO_DATA_CLASSES[i]).
DEMO_DATA_CLASSES: tuple[str, ...] = (
    "t_shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)


def demo_data_dir() -> Path:
    """The built-in demo data folder (ImageFolder layout: ``<class_name>/<index>.png``).

    Raises FileNotFoundError when the package was installed without its data files.
    """
    if not DEMO_DATA_DIR.is_dir():
        raise FileNotFoundError(
            f"tledge's built-in demo data is missing ({DEMO_DATA_DIR}); reinstall tledge, "
            "or regenerate it with scripts/make_demo_data.py"
        )
    return DEMO_DATA_DIR
