"""`tledge sweep` on tiny generated images: grid naming, up-front validation, results read from each run's
files, resume (skip finished, continue interrupted), failing cells, JSON config, k-fold cells, and the
one-worker-per-device path on `--devices cpu,cpu`, and the frozen-prefix cache that cells with the same frozen
part share."""

import csv
import json
import shutil

import pytest

from tledge.cli import main
from tledge.errors import TledgeError
from tledge.training import sweep
from tledge.training.config import TrainConfig
from tledge.training.sweep import cell_config, expand_grid, run_study_sweep, start_sweep, validate_cells
from test_train import Interrupt  # the one epoch-end callback that stops a run

TINY = ["--models", "resnet18", "--weights", "none", "--img-size", "32", "--batch-size", "8", "--augment", "none",
        "--epochs", "1", "--workers", "0", "--lr", "1e-3"]
TINY_CONFIG = dict(model="resnet18", weights="none", img_size=32, batch_size=8, augment="none", epochs=1,
                   workers=0, lr=1e-3)
NUMBERS = ("trainable_params", "train_time_s", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
           "test_acc", "best_epoch")


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_md_table(path):
    """The Markdown table of results.md as a list of {column: cell text}."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    split = lambda line: [part.strip() for part in line.strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    return [dict(zip(header, split(line))) for line in lines[2:]]


def expected_numbers(run_dir):
    """What a results row must hold, read straight from the run's own files."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = read_csv(run_dir / "history.csv")
    return {
        "trainable_params": metrics["trainable_params"],
        "train_time_s": metrics["train_time_s"],
        "train_loss": float(history[-1]["train_loss"]),
        "train_acc": float(history[-1]["train_acc"]),
        "val_loss": float(history[metrics["best_epoch"] - 1]["val_loss"]),
        "val_acc": metrics["best_val_acc"],
        "test_loss": metrics["loss"],
        "test_acc": metrics["accuracy"],
        "best_epoch": metrics["best_epoch"],
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 images per class, 32 px: what make_image_folder writes, shared by the whole module."""
    import cv2
    import numpy as np
    from conftest import CLASS_COLOURS, _class_image

    root = tmp_path_factory.mktemp("sweepdata") / "images"
    rng = np.random.default_rng(0)
    for index, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(root / name / f"{name}_all_{i:03d}.png"), _class_image(CLASS_COLOURS[index], 32, rng))
    return root


@pytest.fixture(scope="module")
def grid_sweep(data, tmp_path_factory):
    """The 2×2 grid freeze {none, all} × optimizer {adam, sgd}, run once through the CLI."""
    project = tmp_path_factory.mktemp("grid") / "runs"
    assert main(["sweep", str(data), *TINY, "--freeze", "none,all", "--optimizer", "adam,sgd",
                 "--project", str(project)]) == 0
    return project / "sweep"


# --------------------------------------------------------------------------------------------- no training
def test_expand_grid_names_cells_deterministically():
    base = TrainConfig(data="d", **TINY_CONFIG)
    cells = expand_grid(base, {"models": ["resnet18", "alexnet"], "freeze": ["none", "stages:2"],
                               "optimizer": ["adam"], "lr": ["1e-3", 0.01]})
    assert [c.name for c in cells] == [
        "resnet18-freeze_none-lr0.001", "resnet18-freeze_none-lr0.01",
        "resnet18-freeze_stages2-lr0.001", "resnet18-freeze_stages2-lr0.01",
        "alexnet-freeze_none-lr0.001", "alexnet-freeze_none-lr0.01",
        "alexnet-freeze_stages2-lr0.001", "alexnet-freeze_stages2-lr0.01",
    ]
    assert cells[2].config.freeze == "stages:2" and cells[2].config.lr == 0.001 and cells[2].config.optimizer == "adam"
    assert cells[5].config.model == "alexnet" and cells[5].config.epochs == 1  # base options kept
    two = expand_grid(base, {"model": ["resnet18"], "freeze": ["none", "all"], "optimizer": ["adam", "sgd"],
                             "epochs": [1, "2"]})
    assert two[-1].name == "resnet18-freeze_all-sgd-ep2" and two[-1].config.epochs == 2
    with pytest.raises(TledgeError, match="cannot sweep over"):
        expand_grid(base, {"colour": ["red"]})
    with pytest.raises(TledgeError, match="repeats"):
        expand_grid(base, {"freeze": ["none", "none"]})
    with pytest.raises(TledgeError, match="bad epochs value"):
        expand_grid(base, {"epochs": ["ten"]})


@pytest.mark.parametrize("parent, device, child", [
    (None, "cuda:1", "1"),
    ("2,3", "cuda:0", "2"),  # --devices indices are the parent's view: its cuda:0 is physical GPU 2
    ("2,3", "1", "3"),
    ("GPU-aaaa, GPU-bbbb", "cuda:1", "GPU-bbbb"),
])
def test_sweep_worker_gets_the_parents_gpu_not_the_physical_index(monkeypatch, tmp_path, parent, device, child):
    if parent is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", parent)
    command, env = sweep.worker_command(tmp_path, device)
    assert env["CUDA_VISIBLE_DEVICES"] == child and command[-2:] == [str(tmp_path), "cuda"]


def test_sweep_worker_index_outside_the_parents_gpus_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(TledgeError, match="makes 2 GPU\\(s\\) visible; use indices 0-1"):
        sweep.worker_command(tmp_path, "cuda:2")


def test_validate_catches_bad_cells_before_training(data):
    base = TrainConfig(data=str(data), **TINY_CONFIG)
    bad = [({"model": ["resnet18", "resnet181"]}, "unknown model 'resnet181'"),
           ({"freeze": ["none", "half"]}, "bad --freeze 'half'"),
           ({"freeze": ["stages:9"]}, "only 5 stages"),
           ({"optimizer": ["adam", "lbfgs"]}, "--optimizer 'lbfgs': must be one of adam, adamw, sgd, adadelta"),
           ({"lr": [0.1, -1]}, r"--lr -1\.0: must be greater than 0"),
           ({"dropout": [1.5]}, r"--dropout 1\.5: must be less than 1"),
           ({"model": ["alexnet"]}, "alexnet cannot take 32 px")]
    for axes, message in bad:
        with pytest.raises(TledgeError, match=message):
            validate_cells(expand_grid(base, axes))
    validate_cells(expand_grid(base, {"model": ["alexnet"], "img_size": [64]}))


def test_bad_grid_values_exit_2_before_any_training(data, tmp_path, capsys):
    project = tmp_path / "runs"
    assert main(["sweep", str(data), *TINY, "--freeze", "none,stages:1,bogus", "--project", str(project)]) == 2
    assert "bad --freeze 'bogus'" in capsys.readouterr().err
    assert main(["sweep", str(data), *TINY[2:], "--models", "resnet18,vgg61", "--project", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cell vgg61") and "did you mean vgg16" in err and len(err.strip().splitlines()) == 1
    assert main(["sweep", str(tmp_path / "nowhere"), *TINY, "--project", str(project)]) == 2
    assert not project.exists()  # nothing was created, nothing trained


# --------------------------------------------------------------------------------------------- grid runs
def test_grid_results_are_each_runs_own_numbers(grid_sweep):
    names = ["resnet18-freeze_none-adam", "resnet18-freeze_none-sgd", "resnet18-freeze_all-adam",
             "resnet18-freeze_all-sgd"]
    for name in names:
        assert (grid_sweep / name / "best.pt").is_file() and (grid_sweep / name / "metrics.json").is_file()
    for name in ("sweep.json", "results.csv", "results.md", "results.json", "results.png"):
        assert (grid_sweep / name).is_file(), name
    rows = read_csv(grid_sweep / "results.csv")
    assert [r["cell"] for r in rows] == names
    cells = json.loads((grid_sweep / "results.json").read_text())["cells"]
    for row, cell in zip(rows, cells):
        assert row["status"] == cell["status"] == "done"
        expected = expected_numbers(grid_sweep / row["cell"])
        for key, value in expected.items():
            assert cell[key] == value, (row["cell"], key)  # exact, not recomputed
            assert float(row[key]) == float(value), (row["cell"], key)  # csv holds repr(float): exact too
    assert {(r["freeze"], r["optimizer"], r["lr"]) for r in rows} == {
        (f, o, "0.001") for f in ("none", "all") for o in ("adam", "sgd")}
    assert cells[2]["trainable_params"] < cells[0]["trainable_params"]  # freeze all trains only the head
    table = read_md_table(grid_sweep / "results.md")
    assert [r["cell"] for r in table] == names
    for shown, cell in zip(table, cells):
        assert shown["trainable"] == f"{cell['trainable_params']:,}"
        for column in ("train loss", "train acc", "val loss", "val acc", "test loss", "test acc"):
            assert shown[column] == f"{cell[column.replace(' ', '_')]:.4f}", column


def test_resume_skips_finished_cells_and_leaves_them_untouched(grid_sweep, tmp_path, capsys):
    copy = tmp_path / "sweep"
    shutil.copytree(grid_sweep, copy)
    files = sorted(copy.glob("*/metrics.json")) + sorted(copy.glob("*/best.pt"))
    before = {f: f.stat().st_mtime_ns for f in files}
    capsys.readouterr()
    assert main(["sweep", "--resume", str(copy)]) == 0
    out = capsys.readouterr().out
    assert out.count("already finished, skipping") == 4 and "epoch   1/1" not in out
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert read_csv(copy / "results.csv") == [
        {**row, "run_dir": str(copy / row["cell"])} for row in read_csv(grid_sweep / "results.csv")]


def test_interrupted_cell_resumes_from_last_pt(data, tmp_path, log_lines):
    from tledge.training.fit import train_run

    base = TrainConfig(data=str(data), **{**TINY_CONFIG, "epochs": 2})
    sweep_dir, cells = start_sweep(base, {"freeze": ["stages:5"]}, tmp_path / "runs")
    first = cells[0]
    cut = train_run(cell_config(first, sweep_dir), run_dir=sweep_dir / first.name,
                    on_epoch_end=Interrupt(0))
    assert cut.interrupted and not (sweep_dir / first.name / "metrics.json").exists()
    lines = log_lines
    rows = run_study_sweep(sweep_dir)
    assert any(f"{first.name}: resuming from" in line for line in lines)
    assert any("resuming" in line and "at epoch 2/2" in line for line in lines)
    assert [r["status"] for r in rows] == ["done"]
    history = read_csv(sweep_dir / first.name / "history.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2]
    for row in rows:
        assert {k: row[k] for k in NUMBERS} == expected_numbers(sweep_dir / row["cell"])


def test_failing_cell_is_reported_and_the_others_run(data, tmp_path, monkeypatch, capsys):
    import tledge.training.fit as fit

    real = fit.train_run

    def flaky(config, **kwargs):
        if config.freeze == "stages:5":
            raise TledgeError("simulated: CUDA out of memory")
        return real(config, **kwargs)

    monkeypatch.setattr(fit, "train_run", flaky)
    project = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(data), *TINY, "--freeze", "stages:5,all", "--project", str(project)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err  # a problem: a warning on stderr
    assert "warning: resnet18-freeze_stages5: FAILED: simulated: CUDA out of memory" in err
    rows = read_csv(project / "sweep" / "results.csv")
    assert [(r["cell"], r["status"]) for r in rows] == [("resnet18-freeze_stages5", "failed"),
                                                         ("resnet18-freeze_all", "done")]
    assert rows[0]["error"] == "simulated: CUDA out of memory" and rows[0]["test_acc"] == ""
    assert float(rows[1]["test_acc"]) == expected_numbers(project / "sweep" / "resnet18-freeze_all")["test_acc"]
    assert "failed: simulated" in (project / "sweep" / "results.md").read_text()
    # the failure is retried on resume; this time it trains
    monkeypatch.setattr(fit, "train_run", real)
    assert main(["sweep", "--resume", str(project / "sweep")]) == 0
    assert [r["status"] for r in read_csv(project / "sweep" / "results.csv")] == ["done", "done"]


def test_json_config_with_a_kfold_cell(data, tmp_path):
    spec = {"data": str(data), **TINY_CONFIG, "models": ["resnet18"], "freeze": ["all"], "optimizer": ["sgd"],
            "lr": 0.01, "kfold": 2, "project": str(tmp_path / "runs"), "name": "study", "split": [0.75, 0.0, 0.25]}
    del spec["model"]
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert main(["sweep", "--config", str(path)]) == 0
    sweep_dir = tmp_path / "runs" / "study"
    grid = json.loads((sweep_dir / "sweep.json").read_text())
    assert grid["axes"] == {"model": ["resnet18"], "freeze": ["all"], "optimizer": ["sgd"]}
    assert grid["base"]["kfold"] == 2 and grid["base"]["lr"] == 0.01 and grid["base"]["split"] == [0.75, 0.0, 0.25]
    (cell,) = json.loads((sweep_dir / "results.json").read_text())["cells"]
    assert cell["cell"] == "resnet18" and cell["status"] == "done" and cell["k"] == 2
    run = sweep_dir / "resnet18"
    summary = json.loads((run / "kfold.json").read_text())["summary"]
    assert cell["test_acc"] == pytest.approx(summary["test_acc"]["mean"], abs=1e-12)
    assert cell["test_acc_std"] == pytest.approx(summary["test_acc"]["std"], abs=1e-12)
    assert cell["val_acc"] == pytest.approx(summary["val_acc"]["mean"], abs=1e-12)
    assert cell["train_time_s"] == pytest.approx(summary["train_time_s"]["mean"], abs=1e-12)
    folds = [expected_numbers(run / f"fold{k}") for k in (1, 2)]
    assert cell["train_loss"] == pytest.approx(sum(f["train_loss"] for f in folds) / 2, abs=1e-12)
    assert cell["trainable_params"] == folds[0]["trainable_params"] and cell["trainable_params_std"] == 0.0
    (shown,) = read_md_table(sweep_dir / "results.md")
    assert shown["test acc"] == f"{cell['test_acc']:.4f} ± {cell['test_acc_std']:.4f}"
    assert shown["folds"] == "2"


def test_cpu_devices_run_one_study_worker_each_and_every_cell_once(data, grid_sweep, tmp_path, capsys):
    from tledge.training import sweep_study

    project = tmp_path / "runs"
    code = main(["sweep", str(data), *TINY, "--freeze", "none,all", "--optimizer", "adam,sgd",
                 "--project", str(project), "--devices", "cpu,cpu"])
    assert code == 0
    out = capsys.readouterr().out
    assert "worker 1 on cpu" in out and "worker 2 on cpu" in out
    parallel = project / "sweep"
    assert sorted(p.name for p in (parallel / "workers").iterdir()) == ["worker1-cpu.log", "worker2-cpu.log"]
    trials = sweep_study.study_trials(parallel)
    names = sorted(r["cell"] for r in read_csv(grid_sweep / "results.csv"))
    assert sorted(t.user_attrs["cell"] for t in trials) == names  # every cell once, no other trial
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) <= 2
    rows = read_csv(parallel / "results.csv")
    serial = {r["cell"]: r for r in read_csv(grid_sweep / "results.csv")}
    assert sorted(r["cell"] for r in rows) == names
    for row in rows:
        ref = serial[row["cell"]]
        assert row["status"] == "done"
        assert {k: float(row[k]) for k in NUMBERS} == expected_numbers(parallel / row["cell"])
        for key in ("model", "lr", "epochs", "img_size", "trainable_params", "total_params", "best_epoch"):
            assert row[key] == ref[key], key
        for key in ("train_loss", "val_loss", "test_loss", "test_acc"):  # same seed, data and split
            assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-3, abs=1e-4), (row["cell"], key)


# --------------------------------------------------------------------------------------------- shared trunk cache
def counting_cache_prefix(monkeypatch):
    """Count the frozen-prefix passes (one per split a run caches itself)."""
    import tledge.training.epochs as epochs

    calls = []
    real = epochs.cache_prefix

    def counted(model, stages, *args, **kwargs):
        calls.append(stages)
        return real(model, stages, *args, **kwargs)

    monkeypatch.setattr(epochs, "cache_prefix", counted)
    return calls


def test_cells_with_the_same_frozen_part_cache_it_once(data, tmp_path, monkeypatch, capsys):
    """freeze {all, stages:3} × lr {1e-3, 1e-2}: the two lr cells of each freeze share its train and val
    outputs (2 passes per freeze, not 4), the two freezes share nothing, and every cell's numbers are those
    of the same sweep with --no-shared-cache."""
    grid = [*TINY, "--freeze", "all,stages:3", "--lr", "1e-3,1e-2"]
    calls = counting_cache_prefix(monkeypatch)
    assert main(["sweep", str(data), *grid, "--project", str(tmp_path / "shared")]) == 0
    assert sorted(calls, key=str) == [3, 3, None, None]  # train and val of each freeze, once
    shared = tmp_path / "shared" / "sweep"
    assert len(list((shared / "trunk_cache").glob("*.pt"))) == 4
    assert capsys.readouterr().out.count("frozen-prefix outputs shared from") == 4  # 2 later cells × 2 splits

    calls.clear()
    assert main(["sweep", str(data), *grid, "--no-shared-cache", "--project", str(tmp_path / "own")]) == 0
    assert sorted(calls, key=str) == [3, 3, 3, 3, None, None, None, None]
    own = tmp_path / "own" / "sweep"
    assert not (own / "trunk_cache").exists()
    for cell in ("resnet18-freeze_all-lr0.001", "resnet18-freeze_all-lr0.01", "resnet18-freeze_stages3-lr0.001",
                 "resnet18-freeze_stages3-lr0.01"):
        ours, theirs = (json.loads((root / cell / "metrics.json").read_text()) for root in (shared, own))
        assert ours["best_val_acc"] == theirs["best_val_acc"] and ours["accuracy"] == theirs["accuracy"], cell
        ours, theirs = (read_csv(root / cell / "history.csv")[-1] for root in (shared, own))
        assert ours["val_loss"] == theirs["val_loss"], cell


def test_a_second_worker_waits_for_the_first_and_loads_its_outputs(tmp_path):
    """Two callers of one key: the second blocks on the lock while the first computes, then loads its file
    (never computing, never reading half of it); a first caller that fails leaves the key to the next."""
    import threading

    import torch
    from torch.utils.data import TensorDataset

    from tledge.training import trunk_cache

    outputs, labels = torch.arange(12, dtype=torch.float32).reshape(4, 3), torch.tensor([0, 1, 0, 1])
    started, release, second_computed = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        release.wait(60)
        return TensorDataset(outputs, labels), "pytorch", 1.5

    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", trunk_cache.shared_features(
        tmp_path, "k", slow)))
    first.start()
    started.wait(60)
    second = threading.Thread(target=lambda: results.setdefault("second", trunk_cache.shared_features(
        tmp_path, "k", lambda: second_computed.append(1))))
    second.start()
    release.set()
    first.join(60), second.join(60)
    assert second_computed == [] and results["first"][3] is False and results["second"][3] is True
    loaded, engine, seconds, _ = results["second"]
    assert torch.equal(loaded.tensors[0], outputs) and torch.equal(loaded.tensors[1], labels)
    assert (engine, seconds) == ("pytorch", 1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.lock", "k.pt"]  # no temp file left

    def broken():
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        trunk_cache.shared_features(tmp_path, "other", broken)
    assert not (tmp_path / "other.pt").exists()
    *_, reused = trunk_cache.shared_features(tmp_path, "other", slow)
    assert reused is False and (tmp_path / "other.pt").is_file()
