"""One labelled-folder reader: training's eval, export parity and bench see exactly the same images of a
folder (hidden files left out, nested folders in, unreadable files skipped and named)."""

from __future__ import annotations

import shutil

import pytest

from tledge.card import ModelCard
from tledge.errors import TledgeError
from tledge.verification.parity import labelled_folder
from tledge.runtime.bench import labelled_images
from tledge.datasets.folders import read_labelled_folder


def test_eval_parity_and_bench_read_the_same_images(make_image_folder):
    root = make_image_folder(classes=("red", "green"), per_class=3, odd_files=True)
    shutil.copy(root / "red" / "red_all_000.png", root / "red" / ".hidden.png")
    (root / "green" / "nested").mkdir()
    shutil.copy(root / "green" / "green_all_000.png", root / "green" / "nested" / "deep.png")
    card = ModelCard("mobilenet_v2", ["red", "green", "blue"], input_size=(32, 32))

    items, skipped = read_labelled_folder(root, card.class_names)
    parity = labelled_folder(root, card)
    paths, labels, bench_skipped = labelled_images(root, card.class_names)

    assert parity.paths == paths == [p for p, _ in items]
    assert parity.labels == labels == [label for _, label in items]
    assert len(paths) == 3 + 3 + 3 + 1  # 3 per class, the readable odd files (gray, RGBA, 16-bit), deep.png
    assert not any(p.name == ".hidden.png" for p in paths) and any(p.name == "deep.png" for p in paths)
    assert len(skipped) == 3 and parity.skipped == bench_skipped
    assert sorted(s.split(" ")[0].rsplit("/", 1)[-1] for s in bench_skipped) == [
        "bad_empty.jpg", "bad_text.jpg", "bad_truncated.jpg"]


def test_each_caller_keeps_its_own_error_wording(make_image_folder, tmp_path):
    root = make_image_folder(classes=("red", "purple"), per_class=2)
    card = ModelCard("mobilenet_v2", ["red", "green"], input_size=(32, 32))
    with pytest.raises(TledgeError, match="parity data must have one subfolder per class.*purple"):
        labelled_folder(root, card)
    with pytest.raises(TledgeError, match="^--data .*purple"):
        labelled_images(root, card.class_names)
