"""Data discovery, splits and the data report (tledge/datasets/folders.py and its data_* modules)."""

from __future__ import annotations

import shutil
from collections import Counter

import cv2
import numpy as np
import pytest

from tledge.errors import TledgeError
from tledge.splits import Splits
from tledge.datasets.folders import build_splits, missing_classes, read_labelled_folder
from tledge.datasets.split import split_counts, stratified_kfold


def per_class(splits: Splits, split: str) -> dict[str, int]:
    counts = Counter(splits.labels(split))
    return {name: counts.get(i, 0) for i, name in enumerate(splits.class_names)}


# ---------------------------------------------------------------- layouts and splits


def test_image_folder_is_split_stratified(make_image_folder):
    root = make_image_folder(per_class=10)
    splits, report = build_splits(root)
    assert splits.class_names == ["blue", "green", "red"]
    assert splits.root == str(root.resolve())
    for name in splits.class_names:
        assert per_class(splits, "train")[name] == 8
        assert per_class(splits, "val")[name] == 1
        assert per_class(splits, "test")[name] == 1
    assert report.counts["train"] == {"blue": 8, "green": 8, "red": 8}
    assert report.layout == "image folder"
    all_paths = [rel for s in ("train", "val", "test") for rel, _ in splits.items[s]]
    assert len(all_paths) == len(set(all_paths)) == 30
    assert all(not rel.startswith("/") and (root / rel).is_file() for rel in all_paths)
    # labels match the class folder
    for rel, label in splits.items["train"]:
        assert rel.split("/")[0] == splits.class_names[label]


def test_small_classes_still_reach_val_and_test(make_image_folder):
    root = make_image_folder(per_class={"red": 3, "green": 4, "blue": 12})
    splits, _ = build_splits(root)
    for split in ("val", "test"):
        assert all(n >= 1 for n in per_class(splits, split).values())
    assert per_class(splits, "train")["red"] == 1


@pytest.mark.parametrize(
    "n, expected",
    [(1, (1, 0, 0)), (2, (2, 0, 0)), (3, (1, 1, 1)), (10, (8, 1, 1)), (25, (19, 3, 3)), (100, (80, 10, 10))],
)
def test_split_counts(n, expected):
    assert split_counts(n, (0.8, 0.1, 0.1)) == expected
    assert sum(split_counts(n, (0.5, 0.5, 0.0))) == n
    assert split_counts(10, (0.8, 0.2, 0.0)) == (8, 2, 0)


def test_splits_reproducible_and_seed_dependent(make_image_folder):
    root = make_image_folder(per_class=20)
    first, _ = build_splits(root, seed=0)
    again, _ = build_splits(root, seed=0)
    other, _ = build_splits(root, seed=1)
    assert first.items == again.items
    assert first.items["val"] != other.items["val"]


def test_adding_a_file_to_one_class_leaves_other_classes_alone(make_image_folder):
    root = make_image_folder(per_class=20)
    before, _ = build_splits(root)
    cv2.imwrite(str(root / "red" / "zz_extra.png"), np.full((32, 32, 3), 7, np.uint8))
    after, _ = build_splits(root)
    blue = before.class_names.index("blue")
    for split in ("train", "val", "test"):
        assert [i for i in before.items[split] if i[1] == blue] == [i for i in after.items[split] if i[1] == blue]


def test_split_folders_train_val_test_used_as_they_are(make_image_folder):
    root = make_image_folder(splits={"train": 5, "val": 2, "test": 3})
    splits, report = build_splits(root)
    assert per_class(splits, "train") == {"blue": 5, "green": 5, "red": 5}
    assert per_class(splits, "val") == {"blue": 2, "green": 2, "red": 2}
    assert per_class(splits, "test") == {"blue": 3, "green": 3, "red": 3}
    assert all(rel.startswith("val/") for rel, _ in splits.items["val"])
    assert report.layout == "split folders: train, val, test"


def test_train_and_test_folders_carve_val_out_of_train(make_image_folder):
    root = make_image_folder(splits={"train": 9, "test": 2})
    splits, _ = build_splits(root, ratios=(0.8, 0.1, 0.1))
    # val = 0.1 / (0.8 + 0.1) of train, at least one per class
    assert per_class(splits, "val") == {"blue": 1, "green": 1, "red": 1}
    assert per_class(splits, "train") == {"blue": 8, "green": 8, "red": 8}
    assert all(rel.startswith("test/") for rel, _ in splits.items["test"])
    assert all(rel.startswith("train/") for rel, _ in splits.items["val"])


def test_intel_scene_folders_and_unlabelled_pred_ignored(make_image_folder, tmp_path):
    root = make_image_folder(splits={"seg_train": 10, "seg_test": 2})
    pred = root / "seg_pred" / "seg_pred"
    pred.mkdir(parents=True)
    cv2.imwrite(str(pred / "x.jpg"), np.zeros((16, 16, 3), np.uint8))
    splits, report = build_splits(root)
    assert splits.class_names == ["blue", "green", "red"]
    assert per_class(splits, "test") == {"blue": 2, "green": 2, "red": 2}
    assert sum(per_class(splits, "val").values()) == 3
    assert not any("seg_pred" in rel for s in splits.items.values() for rel, _ in s)
    assert not any("ignored folder" in w for w in report.warnings)


def test_only_train_folder_is_split_80_10_10(make_image_folder):
    root = make_image_folder(splits=["train"], per_class=10)
    splits, report = build_splits(root)
    assert per_class(splits, "train") == {"blue": 8, "green": 8, "red": 8}
    assert report.layout == "split folders: train"


def test_split_folders_with_different_classes_is_an_error(make_image_folder):
    root = make_image_folder(splits={"train": 4, "test": 2})
    shutil.rmtree(root / "test" / "green")
    (root / "test" / "purple").mkdir()
    with pytest.raises(TledgeError, match=r"test/ lacks \['green'\] and has extra \['purple'\]"):
        build_splits(root)


def test_nested_and_hidden_files(make_image_folder):
    root = make_image_folder(per_class=5)
    (root / "red" / "sub" / "deeper").mkdir(parents=True)
    cv2.imwrite(str(root / "red" / "sub" / "deeper" / "nested.png"), np.full((20, 20, 3), 9, np.uint8))
    cv2.imwrite(str(root / "red" / ".hidden.png"), np.zeros((20, 20, 3), np.uint8))
    (root / "red" / ".cache").mkdir()
    cv2.imwrite(str(root / "red" / ".cache" / "x.png"), np.zeros((20, 20, 3), np.uint8))
    (root / "red" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    splits, report = build_splits(root)
    assert splits.class_names == ["blue", "green", "red"]
    assert report.class_totals()["red"] == 6
    every = [rel for s in splits.items.values() for rel, _ in s]
    assert "red/sub/deeper/nested.png" in every
    assert not any("/." in rel for rel in every)


# ---------------------------------------------------------------- odd and broken files


def test_odd_images_kept_and_broken_ones_skipped_and_named(make_image_folder):
    root = make_image_folder(per_class=6, odd_files=True)
    splits, report = build_splits(root)
    every = {rel for s in splits.items.values() for rel, _ in s}
    for name in ("odd_gray.png", "odd_rgba.png", "odd_16bit.png"):
        assert f"red/{name}" in every  # odd files go to the first class given
    skipped = dict(report.skipped)
    assert set(skipped) == {"red/bad_truncated.jpg", "red/bad_empty.jpg", "red/bad_text.jpg"}
    assert sorted(splits.skipped) == sorted(skipped)
    assert any("truncated" in reason for reason in skipped.values())
    assert any("empty" in reason for reason in skipped.values())
    assert any("not a readable image" in reason for reason in skipped.values())
    assert any("skipped 3 unreadable" in line for line in report.summary_lines())


def test_truncated_png_is_skipped(make_image_folder):
    root = make_image_folder(per_class=4)
    data = (root / "red" / "red_all_000.png").read_bytes()
    (root / "red" / "red_all_000.png").write_bytes(data[: len(data) - 20])
    _, report = build_splits(root)
    assert report.skipped == [("red/red_all_000.png", "truncated PNG (no IEND chunk)")]


def test_jpeg_with_trailing_padding_is_kept(make_image_folder):
    root = make_image_folder(per_class=4, ext=".jpg")
    path = root / "red" / "red_all_000.jpg"
    path.write_bytes(path.read_bytes() + b"\x00" * 16)
    _, report = build_splits(root)
    assert report.skipped == []


# ---------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(TledgeError, match="data folder not found"):
        build_splits(tmp_path / "nope")


def test_not_a_folder(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(TledgeError, match="not a folder"):
        build_splits(tmp_path / "file.txt")


def test_no_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(TledgeError, match="no images found"):
        build_splits(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(TledgeError, match="no images found"):
        build_splits(tmp_path)


def test_images_without_class_folders(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(TledgeError, match="no class subfolders"):
        build_splits(tmp_path)


def test_one_class(make_image_folder):
    root = make_image_folder(classes=["only"], per_class=4)
    with pytest.raises(TledgeError, match="at least 2 class folders"):
        build_splits(root)


def test_class_with_no_readable_images_is_named(make_image_folder):
    root = make_image_folder(per_class=4)
    (root / "cats").mkdir()
    (root / "cats" / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(TledgeError, match="class folder .*cats has no readable images"):
        build_splits(root)


@pytest.mark.parametrize(
    "ratios, message",
    [
        ((0.8, 0.2), "3 non-negative numbers"),
        ((0.8, 0.3, -0.1), "3 non-negative numbers"),
        ((0.5, 0.2, 0.2), "sum to 1"),
        ((0.0, 0.5, 0.5), "train ratio must be above 0"),
        (("a", 0.1, 0.1), "3 numbers"),
    ],
)
def test_bad_ratios(make_image_folder, ratios, message):
    root = make_image_folder(per_class=3)
    with pytest.raises(TledgeError, match=message):
        build_splits(root, ratios=ratios)


def test_val_test_without_train(make_image_folder):
    root = make_image_folder(splits={"val": 2, "test": 2})
    with pytest.raises(TledgeError, match="no train folder"):
        build_splits(root)


# ---------------------------------------------------------------- report


def test_duplicates_across_splits_are_warned(make_image_folder):
    root = make_image_folder(splits={"train": 4, "test": 2})
    shutil.copy(root / "train" / "red" / "red_train_000.png", root / "test" / "red" / "copy.png")
    _, report = build_splits(root)
    assert report.cross_split_duplicates == [["test/red/copy.png", "train/red/red_train_000.png"]]
    assert any("byte-identical" in w and "1 image" in w and "test/red/copy.png" in w for w in report.warnings)


def test_our_own_split_keeps_identical_files_together(make_image_folder):
    root = make_image_folder(per_class=10)
    for i in range(5):
        shutil.copy(root / "red" / "red_all_000.png", root / "red" / f"copy{i}.png")
    splits, report = build_splits(root)
    assert report.cross_split_duplicates == []
    where = {rel: s for s, items in splits.items.items() for rel, _ in items}
    assert len({where[f"red/copy{i}.png"] for i in range(5)} | {where["red/red_all_000.png"]}) == 1


def test_identical_files_with_different_labels_are_warned(make_image_folder):
    root = make_image_folder(per_class=6)
    shutil.copy(root / "red" / "red_all_000.png", root / "blue" / "looks_red.png")
    _, report = build_splits(root)
    assert report.label_conflicts == [["blue/looks_red.png", "red/red_all_000.png"]]
    assert any("different classes" in w for w in report.warnings)


def test_imbalance_warned_with_ratio(make_image_folder):
    root = make_image_folder(per_class={"red": 16, "green": 8, "blue": 8})
    _, report = build_splits(root)
    assert any("imbalanced 2.0:1" in w and "'red'" in w for w in report.warnings)
    balanced = make_image_folder(per_class=8)
    _, report = build_splits(balanced)
    assert not any("imbalanced" in w for w in report.warnings)


def test_fingerprint_stable_and_sensitive(make_image_folder):
    root = make_image_folder(per_class=5)
    _, first = build_splits(root)
    _, again = build_splits(root, seed=3)
    assert first.fingerprint == again.fingerprint and len(first.fingerprint) == 64
    cv2.imwrite(str(root / "red" / "red_all_001.png"), np.full((32, 32, 3), 200, np.uint8))
    _, changed = build_splits(root)
    assert changed.fingerprint != first.fingerprint


def test_summary_lines_and_dict(make_image_folder):
    root = make_image_folder(per_class=5)
    _, report = build_splits(root)
    text = "\n".join(report.summary_lines())
    assert "3 classes" in text and "total" in text and "fingerprint" in text
    rows = {line.split()[0]: line.split()[1:] for line in report.summary_lines()[1:7]}
    assert rows["class"] == ["train", "val", "test"]
    assert rows["red"] == [str(report.counts[s].get("red", 0)) for s in ("train", "val", "test")]
    assert rows["total"] == [str(report.split_total(s)) for s in ("train", "val", "test")] and rows["total"][0] == "9"
    data = report.to_dict()
    assert data["counts"]["train"]["red"] == 3 and data["class_names"] == ["blue", "green", "red"]


def test_splits_round_trip_through_json(make_image_folder, tmp_path):
    root = make_image_folder(per_class=5, odd_files=True)
    splits, _ = build_splits(root)
    splits.save(tmp_path)
    loaded = Splits.load(tmp_path)
    assert loaded.items == splits.items and loaded.skipped == splits.skipped


# ---------------------------------------------------------------- labelled folders for evaluation


def test_read_labelled_folder_maps_to_model_classes(make_image_folder):
    root = make_image_folder(classes=("red", "blue"), per_class=3, odd_files=True)
    model_classes = ["blue", "green", "red"]
    items, skipped = read_labelled_folder(root, model_classes)
    assert len(items) == 3 + 3 + 3  # red has 3 odd-but-readable files
    assert {label for _, label in items} == {0, 2}
    assert all(path.is_absolute() and path.exists() for path, _ in items)
    assert len(skipped) == 3
    assert missing_classes(items, model_classes) == ["green"]


def test_read_labelled_folder_unknown_class(make_image_folder):
    root = make_image_folder(classes=("red", "cyan", "magenta"), per_class=2)
    with pytest.raises(TledgeError, match=r"\['cyan', 'magenta'\].*not classes of this model"):
        read_labelled_folder(root, ["red", "blue"])


def test_read_labelled_folder_split_layout_hint(make_image_folder):
    root = make_image_folder(splits={"train": 2, "test": 2})
    with pytest.raises(TledgeError, match="looks like split folders"):
        read_labelled_folder(root, ["red", "green", "blue"])


# ---------------------------------------------------------------- k-fold


def test_stratified_kfold_disjoint_covering_stratified():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 5)
    folds = stratified_kfold(labels, k=5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))
    for train, val in folds:
        assert set(train).isdisjoint(val) and len(train) + len(val) == len(labels)
        assert set(labels[val]) == {0, 1, 2}
        assert Counter(labels[val])[0] == 2
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1
    again = stratified_kfold(labels, k=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = stratified_kfold(labels, k=5, seed=1)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


@pytest.mark.parametrize("k, message", [(1, "k >= 2"), (6, "class 2 has 5")])
def test_stratified_kfold_bad_k(k, message):
    with pytest.raises(TledgeError, match=message):
        stratified_kfold([0] * 10 + [1] * 7 + [2] * 5, k=k, seed=0)
