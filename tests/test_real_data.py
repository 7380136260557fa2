"""Slow, real: MobileNetV2 from the real ImageNet weights on real scene photos (run with `pytest -m slow`)."""

import random
import shutil
from pathlib import Path

import pytest

from tledge.training.config import TrainConfig
from tledge.training.fit import train_run
from tledge.models.weights import add_weights

SHARED = Path(__file__).resolve().parents[2] / "shared"
SCENES = SHARED / "data" / "intel-scenes" / "train"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SCENES.is_dir() and WEIGHTS.is_file()), reason="shared scene photos/weights absent"),
]


def scene_subset(root: Path, per_class: int) -> Path:
    rng = random.Random(0)
    for folder in sorted(SCENES.iterdir()):
        files = sorted(folder.glob("*.jpg"))
        rng.shuffle(files)
        (root / folder.name).mkdir(parents=True)
        for f in files[:per_class]:
            (root / folder.name / f.name).symlink_to(f)
    return root


def test_imagenet_mobilenet_v2_learns_scenes(tmp_path, monkeypatch, log_lines):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    add_weights(WEIGHTS)
    data = scene_subset(tmp_path / "scenes", per_class=60)  # 360 photos, 6 classes
    lines = log_lines
    result = train_run(TrainConfig(data=str(data), model="mobilenet_v2", weights="imagenet", freeze="last:3",
                                   img_size=150, epochs=3, batch_size=32, augment="light", lr=1e-3,
                                   project=str(tmp_path / "runs"), workers=0))
    print("\n".join(lines))
    assert result.test_metrics["accuracy"] > 0.6  # chance is 1/6
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    shutil.rmtree(tmp_path / "runs")
