"""End-to-end training on tiny generated images: learning, outputs, resume, freeze-all cache, k-fold, eval."""

import csv
import json

import pytest
import torch

from tledge.checkpoint import load_checkpoint
from tledge.cli import main
from tledge.training.config import TrainConfig
from tledge.training.fit import train_run
from tledge.training.kfold import run_kfold

TINY = dict(model="resnet18", weights="none", img_size=32, batch_size=8, optimizer="adam", lr=1e-3, scheduler="cosine", workers=0, augment="none", seed=0)


@pytest.fixture
def data(make_image_folder):
    return make_image_folder(classes=("red", "green", "blue"), per_class=20, size=32)


def config(data, tmp_path, **changes):
    return TrainConfig(data=str(data), project=str(tmp_path / "runs"), **{**TINY, **changes})


def test_training_learns_and_writes_every_output(data, tmp_path):
    result = train_run(config(data, tmp_path, epochs=6))
    history = result.history
    assert len(history) == 6
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.test_metrics["accuracy"] > 0.6  # chance is 1/3
    run = result.run_dir
    assert run.name == "exp"
    for name in ("best.pt", "last.pt", "card.json", "splits.json", "config.json", "history.csv", "metrics.json",
                 "curves.png", "confusion_matrix.png", "samples.png", "metrics.md", "diagnosis.json"):
        assert (run / name).is_file(), name
    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch
    assert sum(map(sum, metrics["confusion_matrix"])) == 6  # 10% of 60 images
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["card"]["best_metrics"]["test_acc"] == metrics["accuracy"]
    assert best["card"]["class_names"] == ["blue", "green", "red"]
    # a second run gets the next name
    assert train_run(config(data, tmp_path, epochs=1)).run_dir.name == "exp2"


class Interrupt:
    def __init__(self, after_epoch):
        self.after_epoch = after_epoch

    def __call__(self, epoch, row):
        if epoch == self.after_epoch:
            raise KeyboardInterrupt


def test_resume_continues_bit_for_bit(data, tmp_path):
    straight = train_run(config(data, tmp_path, epochs=4, augment="standard", dropout=0.2, name="a"))
    cut = train_run(config(data, tmp_path, epochs=4, augment="standard", dropout=0.2, name="b"), on_epoch_end=Interrupt(1))
    assert cut.interrupted and len(cut.history) == 2
    assert load_checkpoint(cut.run_dir / "last.pt")["epoch"] == 1
    resumed = train_run(TrainConfig(data=""), run_dir=cut.run_dir, resume=True)
    a = load_checkpoint(straight.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("epoch_time_s", "images_per_s")} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert resumed.test_metrics["accuracy"] == straight.test_metrics["accuracy"]


def test_freeze_all_caches_features_and_keeps_trunk(data, tmp_path, log_lines):
    lines = log_lines
    result = train_run(config(data, tmp_path, epochs=3, freeze="all", lr=1e-2, model="mobilenet_v2",
                                    arch_kwargs={"width_mult": 0.25}))
    assert any("features cached" in line for line in lines)
    assert any("freeze all:" in line and "parameters train" in line for line in lines)
    torch.manual_seed(0)
    from tledge.models.backbones import create_model

    initial = create_model("mobilenet_v2", 3, width_mult=0.25).state_dict()
    trained = load_checkpoint(result.run_dir / "best.pt")["model"]
    for key, value in trained.items():
        if not key.startswith("head."):
            assert torch.equal(value, initial[key]), key  # weights and BN statistics unchanged
    assert not torch.equal(trained["head.0.weight"], initial["head.0.weight"])


def test_kfold_writes_per_fold_and_summary(data, tmp_path, log_lines):
    outcome = run_kfold(config(data, tmp_path, epochs=1, kfold=2))
    run = tmp_path / "runs" / "exp"
    assert [row["fold"] for row in outcome["folds"]] == [1, 2]
    assert (run / "fold1" / "best.pt").is_file() and (run / "fold2" / "best.pt").is_file()
    assert (run / "best.pt").is_file() and (run / "kfold.md").is_file()
    saved = json.loads((run / "kfold.json").read_text())
    accs = [row["val_acc"] for row in saved["folds"]]
    assert saved["summary"]["val_acc"]["mean"] == pytest.approx(sum(accs) / 2)
    # every train+val image is validated exactly once across folds
    val_sets = [json.loads((run / f"fold{i}" / "splits.json").read_text())["val"] for i in (1, 2)]
    assert len(val_sets[0]) + len(val_sets[1]) == 54 and not {tuple(x) for x in val_sets[0]} & {tuple(x) for x in val_sets[1]}
    # rerunning skips finished folds
    lines = log_lines
    run_kfold(config(data, tmp_path, epochs=1, kfold=2), resume_dir=run)
    assert sum("already finished" in line for line in lines) == 2


def test_cli_train_then_eval_agree(data, tmp_path, capsys):
    args = ["train", str(data), "--model", "mobilenet_v2", "--weights", "none", "--width-mult", "0.25",
            "--img-size", "32", "--epochs", "2", "--batch-size", "8", "--augment", "light", "--workers", "0",
            "--project", str(tmp_path / "runs"), "--name", "cli"]
    assert main(args) == 0
    run = tmp_path / "runs" / "cli"
    trained = json.loads((run / "metrics.json").read_text())
    assert main(["eval", str(run), "--json", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["accuracy"] == trained["accuracy"]
    assert evaluated["confusion_matrix"] == trained["confusion_matrix"]
    assert main(["eval", str(run), str(data)]) == 0  # any labelled folder with the same classes
    assert json.loads((run / f"eval-{data.name}" / "metrics.json").read_text())["num_samples"] == 60


@pytest.mark.parametrize("case", ["missing", "one_class", "empty", "unknown_model", "bad_freeze", "bad_split",
                                  "resume_nothing", "no_data"])
def test_user_errors_exit_2_with_one_line(case, make_image_folder, tmp_path, capsys):
    good = make_image_folder(per_class=4, size=16)
    (tmp_path / "empty").mkdir()
    args = {
        "missing": ["train", str(tmp_path / "nope")],
        "one_class": ["train", str(make_image_folder(classes=("only",), per_class=4, size=16))],
        "empty": ["train", str(tmp_path / "empty")],
        "unknown_model": ["train", str(good), "--model", "resnet19", "--weights", "none"],
        "bad_freeze": ["train", str(good), "--freeze", "sometimes", "--weights", "none"],
        "bad_split": ["train", str(good), "--split", "0.5,0.5"],
        "resume_nothing": ["train", "--resume", str(tmp_path)],
        "no_data": ["train"],
    }[case]
    code = main(args + ["--project", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err


def test_cached_features_train_the_head_like_the_uncached_run(data, tmp_path):
    """The cache is an optimisation only: same batches, same head updates, same answers."""
    common = dict(epochs=3, freeze="all", lr=1e-2, model="mobilenet_v2", arch_kwargs={"width_mult": 0.25})
    cached = train_run(config(data, tmp_path, name="cached", **common))
    plain = train_run(config(data, tmp_path, name="plain", cache_features=False, **common))
    for a, b in zip(cached.history, plain.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_acc"] == b["val_acc"]
    assert cached.test_metrics["accuracy"] == plain.test_metrics["accuracy"]
