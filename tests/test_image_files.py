"""One listing of a folder's images (tledge.image_files) with the rules its docstring states, and the
commands that list folders (predict sources, INT8 calibration via export) use it."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from tledge.errors import TledgeError
from tledge.image_files import find_images, find_other_files


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "photos"
    png = cv2.imencode(".png", np.full((8, 8, 3), 90, np.uint8))[1].tobytes()
    for rel in ["b.png", "a/z.JPG", "a/b/c.jpeg", "a-b.PNG", ".hidden.png", ".cache/x.png", "a/._mac.jpg"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
    (root / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"hidden, not listed anywhere")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.png").write_bytes(png)
    os.symlink(outside / "o.png", root / "linked.png")  # a symlinked file counts
    os.symlink(outside, root / "linked_dir")  # a symlinked folder is not entered
    return root


def test_rules_recursive_sorted_no_hidden_any_case_no_symlinked_folders(folder):
    found = [p.relative_to(folder).as_posix() for p in find_images(folder)]
    assert found == ["a/b/c.jpeg", "a/z.JPG", "a-b.PNG", "b.png", "linked.png"]
    assert [p.name for p in find_other_files(folder)] == ["notes.txt"]


def test_missing_folder_is_a_tledge_error(tmp_path):
    with pytest.raises(TledgeError, match="folder not found"):
        find_images(tmp_path / "nowhere")


def test_predict_folders_use_the_same_listing(folder):
    from tledge.runtime.sources import open_source

    source = open_source(str(folder))
    try:
        assert source.paths == find_images(folder)
        assert [os.path.basename(p) for p, _ in source.ignored] == ["notes.txt"]
    finally:
        source.close()
