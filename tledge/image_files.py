"""The one listing of image files in a folder, used by predict/`tledge.load` folders and INT8 calibration,
so every command sees the same images. The rules (training's class-folder reader follows them too):

- recursive; sorted by path, folder by folder (Path order), so runs are reproducible;
- hidden files and folders (name starting with ".") are left out: macOS `._photo.jpg` resource forks and
  `.thumbnails/` caches look like images but are not the user's photos;
- extensions match in any case (`.JPG` is `.jpg`), from preprocess.IMAGE_EXTENSIONS;
- a symlinked file counts; a symlinked folder is not entered (no loops, no images counted twice).
"""

from __future__ import annotations

import os
from pathlib import Path

from tledge.errors import TledgeError
from tledge.preprocess import is_image_file


def list_files(folder: str | Path) -> list[Path]:
    """Every visible file under `folder` (the rules above), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TledgeError(f"folder not found: {folder}")
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):  # followlinks=False: symlinked folders not entered
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return sorted(p for p in found if p.is_file())


def find_images(folder: str | Path) -> list[Path]:
    """The image files under `folder`, sorted (see the module doc for what counts)."""
    return [p for p in list_files(folder) if is_image_file(p)]


def find_other_files(folder: str | Path) -> list[Path]:
    """The visible files under `folder` that are not images (skipped and counted by the callers)."""
    return [p for p in list_files(folder) if not is_image_file(p)]
