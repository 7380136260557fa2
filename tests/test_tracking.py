"""--track tensorboard,mlflow: records read back with the libraries' own readers (EventAccumulator,
MlflowClient), never by reading files; a tracker that fails mid-run does not cost the run."""

import json

import pytest

from tledge.cli import main
from tledge.errors import TledgeError
from tledge.training import tracking
from tledge.training.config import TrainConfig
from tledge.training.fit import train_run
from tledge.training.history import read_history_csv
from tledge.training.kfold import run_kfold
from test_train import Interrupt  # the one epoch-end callback that stops a run

TINY = dict(model="resnet18", weights="none", img_size=32, batch_size=8, optimizer="adam", lr=1e-3, workers=0,
            augment="none", seed=0)

needs_tensorboard = pytest.mark.skipif(tracking.track_problem(["tensorboard"]) is not None,
                                       reason="tensorboard is not installed (pip install 'tledge[track]')")
needs_mlflow = pytest.mark.skipif(tracking.track_problem(["mlflow"]) is not None,
                                  reason="mlflow is not installed (pip install 'tledge[track]')")


@pytest.fixture(autouse=True)
def local_store(monkeypatch):
    """The default local store, whatever the machine's environment says."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@pytest.fixture
def data(make_image_folder):
    return make_image_folder(classes=("red", "green", "blue"), per_class=10, size=32)


def config(data, tmp_path, **changes):
    return TrainConfig(data=str(data), project=str(tmp_path / "runs"), **{**TINY, **changes})


def events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def mlflow_client(run_dir):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.local_uri(run_dir))


def mlflow_runs(client):
    experiment = client.get_experiment_by_name("tledge")
    return client.search_runs([experiment.experiment_id])


# ------------------------------------------------------------------------------------------------ the option
def test_track_option_parses_and_checks_up_front(tmp_path, data):
    assert TrainConfig(data=str(data)).track == ()
    assert tracking.parse_track("tensorboard, MLflow,tensorboard") == ("tensorboard", "mlflow")
    with pytest.raises(TledgeError, match=r"--track mlfow: unknown tracker 'mlfow'.*did you mean mlflow"):
        TrainConfig(data=str(data), track="mlfow")
    assert TrainConfig.from_dict(TrainConfig(data=str(data), track=["mlflow"]).to_dict()).track == ("mlflow",)


def test_cli_unknown_tracker_is_one_line_and_writes_nothing(tmp_path, data, capsys):
    project = tmp_path / "runs"
    assert main(["train", str(data), "--track", "tensorbord", "--project", str(project)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --track tensorbord: unknown tracker") and "\n" not in err
    assert not project.exists()


def test_missing_package_is_one_line_error_before_any_file(tmp_path, data, capsys, monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    project = tmp_path / "runs"
    assert main(["train", str(data), "--track", "tensorboard,mlflow", "--project", str(project)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --track tensorboard,mlflow: mlflow is not installed; pip install 'tledge[track]'"
    assert not project.exists()


def test_mlflow_local_store_needs_sqlalchemy_unless_a_server_is_named(data, monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name: None if name == "alembic" else (real(name) or object()))
    with pytest.raises(TledgeError, match=r"^--track mlflow: mlflow's local store needs alembic; pip install"):
        TrainConfig(data=str(data), track="mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert TrainConfig(data=str(data), track="mlflow").track == ("mlflow",)


# ------------------------------------------------------------------------------------------------ one run
@needs_tensorboard
@needs_mlflow
def test_run_recorded_in_tensorboard_and_mlflow(data, tmp_path, log_lines):
    lines = log_lines
    result = train_run(config(data, tmp_path, epochs=2, track="tensorboard,mlflow"))
    run = result.run_dir
    assert f"tensorboard: tensorboard --logdir {run / 'tensorboard'}" in lines
    assert any(line.startswith(f"mlflow: mlflow ui --backend-store-uri {tracking.local_uri(run)}") for line in lines)
    history = read_history_csv(run / "history.csv")
    metrics = json.loads((run / "metrics.json").read_text())

    board = events(run / "tensorboard")
    val_acc = board.Scalars("val_acc")
    assert [e.step for e in val_acc] == [1, 2]
    assert val_acc[1].value == pytest.approx(history[1]["val_acc"], rel=1e-6)  # event files hold float32
    assert board.Scalars("train_loss")[0].value == pytest.approx(history[0]["train_loss"], rel=1e-6)
    assert board.Scalars("test_accuracy")[0].value == pytest.approx(metrics["accuracy"], rel=1e-6)
    assert {"curves", "confusion_matrix", "samples"} <= set(board.Tags()["images"])
    assert "config/text_summary" in board.Tags()["tensors"]

    client = mlflow_client(run)
    (record,) = mlflow_runs(client)
    assert record.info.status == "FINISHED" and record.info.run_name == run.name
    assert record.data.params["model"] == "resnet18" and record.data.params["img_size"] == "32"
    assert record.data.params["track"] == "tensorboard,mlflow"
    epoch_acc = {m.step: m.value for m in client.get_metric_history(record.info.run_id, "val_acc")}
    assert epoch_acc == {1: history[0]["val_acc"], 2: history[1]["val_acc"]}  # exact: both are doubles
    assert [m.value for m in client.get_metric_history(record.info.run_id, "lr")] == [r["lr"] for r in history]
    assert record.data.metrics["test_accuracy"] == metrics["accuracy"]
    assert record.data.metrics["best_epoch"] == metrics["best_epoch"]
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id, "plots")}
    assert {"plots/curves.png", "plots/confusion_matrix.png", "plots/samples.png"} <= artifacts
    assert "metrics.json" in {a.path for a in client.list_artifacts(record.info.run_id)}
    saved = json.loads((run / tracking.TRACKING_FILE).read_text())
    assert saved["mlflow"]["run_id"] == record.info.run_id


@needs_tensorboard
def test_python_api_takes_track_as_a_list(data, tmp_path):
    import tledge

    run = tledge.train(data, track=["tensorboard"], project=str(tmp_path / "runs"), epochs=1,
                       **{k: v for k, v in TINY.items()})
    history = read_history_csv(run.dir / "history.csv")
    assert events(run.dir / "tensorboard").Scalars("val_acc")[0].value == pytest.approx(history[0]["val_acc"],
                                                                                       rel=1e-6)
    assert not (run.dir / tracking.MLFLOW_DIR).exists()


@needs_tensorboard
@needs_mlflow
def test_resumed_run_goes_on_in_the_same_records(data, tmp_path):
    cut = train_run(config(data, tmp_path, epochs=3, track="mlflow,tensorboard"),
                    on_epoch_end=Interrupt(0))
    assert cut.interrupted
    client = mlflow_client(cut.run_dir)
    (record,) = mlflow_runs(client)
    assert record.info.status == "KILLED"
    resumed = train_run(TrainConfig(data=""), run_dir=cut.run_dir, resume=True)
    (record,) = mlflow_runs(client)
    assert record.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(record.info.run_id, "val_acc")]
    assert steps == [1, 2, 3]
    assert record.data.metrics["test_accuracy"] == resumed.test_metrics["accuracy"]
    history = read_history_csv(cut.run_dir / "history.csv")
    board = [(e.step, e.value) for e in events(cut.run_dir / "tensorboard").Scalars("val_acc")]
    assert board == [(r["epoch"], pytest.approx(r["val_acc"], rel=1e-6)) for r in history]


@needs_mlflow
def test_a_reused_folder_starts_new_records(data, tmp_path):
    first = train_run(config(data, tmp_path, epochs=1, track="mlflow", name="same"))
    train_run(config(data, tmp_path, epochs=1, track="mlflow", name="same", exist_ok=True))
    runs = mlflow_runs(mlflow_client(first.run_dir))
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


@needs_mlflow
def test_tracker_failing_mid_run_warns_once_and_training_goes_on(data, tmp_path, monkeypatch, log_lines):
    calls = {"n": 0}

    def broken(self, values, step):
        calls["n"] += 1
        raise OSError("attempt to write a readonly database")

    monkeypatch.setattr(tracking.MlflowRecord, "metrics", broken)
    lines = log_lines
    result = train_run(config(data, tmp_path, epochs=2, track="mlflow"))
    assert result.test_metrics["accuracy"] >= 0 and (result.run_dir / "best.pt").is_file()
    warnings = [line for line in lines if "mlflow tracking stopped" in line]
    assert warnings == ["warning: mlflow tracking stopped: OSError: attempt to write a readonly database; "
                        "training goes on without it"]
    assert calls["n"] == 1


def test_unwritable_store_at_start_warns_and_trains(data, tmp_path, monkeypatch, log_lines):
    def refuse(*args, **kwargs):
        raise PermissionError("store not writable")

    monkeypatch.setattr(tracking, "_open_record", refuse)
    lines = log_lines
    result = train_run(config(data, tmp_path, epochs=1, track="tensorboard"))
    assert (result.run_dir / "best.pt").is_file()
    assert "warning: tensorboard tracking off for this run: PermissionError: store not writable" in lines


@needs_mlflow
def test_mlflow_tracking_uri_from_the_environment(data, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.chdir(tmp_path)  # a bare SQLite URI puts MLflow's artifacts in ./mlruns (MLflow's own default)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team")
    result = train_run(config(data, tmp_path, epochs=1, track="mlflow"))
    assert not (result.run_dir / tracking.MLFLOW_DIR).exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (record,) = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert record.data.metrics["test_accuracy"] == result.test_metrics["accuracy"]


# ------------------------------------------------------------------------------------------------ k-fold
@needs_tensorboard
@needs_mlflow
def test_kfold_is_a_parent_with_one_child_per_fold(data, tmp_path):
    outcome = run_kfold(config(data, tmp_path, epochs=1, kfold=2, track="tensorboard,mlflow"))
    run = tmp_path / "runs" / "exp"
    assert outcome["run_dir"] == str(run)

    client = mlflow_client(run)
    runs = mlflow_runs(client)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: r.info.run_name)
    assert [c.info.run_name for c in children] == ["fold1", "fold2"]
    assert parent.data.params["kfold"] == "2"
    assert parent.data.metrics["val_acc_mean"] == pytest.approx(outcome["summary"]["val_acc"]["mean"])
    assert "kfold.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    for index, child in enumerate(children, 1):
        history = read_history_csv(run / f"fold{index}" / "history.csv")
        assert [m.value for m in client.get_metric_history(child.info.run_id, "val_acc")] == [history[0]["val_acc"]]
        assert child.info.status == "FINISHED"
        board = events(run / "tensorboard" / f"fold{index}")
        assert board.Scalars("val_acc")[0].value == pytest.approx(history[0]["val_acc"], rel=1e-6)
    assert events(run / "tensorboard").Scalars("val_acc_mean")[0].value == pytest.approx(
        outcome["summary"]["val_acc"]["mean"], rel=1e-6)


# ------------------------------------------------------------------------------------------------ sweep
@needs_tensorboard
@needs_mlflow
def test_sweep_is_a_parent_with_one_child_per_cell(data, tmp_path):
    project = tmp_path / "runs"
    assert main(["sweep", str(data), "--models", "resnet18", "--weights", "none", "--img-size", "32",
                 "--batch-size", "8", "--augment", "none", "--epochs", "1", "--workers", "0",
                 "--optimizer", "adam,sgd", "--track", "mlflow,tensorboard", "--project", str(project)]) == 0
    sweep_dir = project / "sweep"
    client = mlflow_client(sweep_dir)
    runs = mlflow_runs(client)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.run_name == "sweep" and parent.info.status == "FINISHED"
    assert parent.data.params["optimizer"] == "adam,sgd" and parent.data.params["cells"] == "2"
    assert {"results.csv", "results.md"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(p.name for p in sweep_dir.iterdir() if (p / "history.csv").is_file())
    for name, child in children.items():
        history = read_history_csv(sweep_dir / name / "history.csv")
        assert [m.value for m in client.get_metric_history(child.info.run_id, "val_acc")] == [history[0]["val_acc"]]
        assert child.data.params["optimizer"] in name
        board = events(sweep_dir / "tensorboard" / name)
        assert board.Scalars("val_acc")[0].value == pytest.approx(history[0]["val_acc"], rel=1e-6)
    assert "results" in events(sweep_dir / "tensorboard").Tags()["images"]


# ------------------------------------------------------------------------------------------------ export
@needs_mlflow
def test_export_of_a_tracked_run_records_artifacts_and_parity(data, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import tledge

    run = train_run(config(data, tmp_path, epochs=1, track="mlflow")).run_dir
    exp = tledge.export(run, formats=["onnx"])
    client = mlflow_client(run)
    (record,) = mlflow_runs(client)
    (parity,) = exp.parity
    assert record.info.status == "FINISHED"
    assert record.data.tags["parity.onnx"] == parity["outcome"]
    assert record.data.metrics["parity_onnx_agreement"] == parity["agreement"]
    assert record.data.metrics["parity_onnx_images"] == parity["images"]
    assert {"export/model.onnx", "export/parity.json"} <= {a.path for a in client.list_artifacts(record.info.run_id,
                                                                                                  "export")}


def test_export_of_an_untracked_run_records_nothing(tmp_path, log_lines):
    lines = log_lines
    assert tracking.record_export(tmp_path, [], []) is False and lines == []


@needs_mlflow
def test_parallel_sweep_workers_record_their_cells_under_the_sweep(data, tmp_path):
    project = tmp_path / "runs"
    assert main(["sweep", str(data), "--models", "resnet18", "--weights", "none", "--img-size", "32",
                 "--batch-size", "8", "--augment", "none", "--epochs", "1", "--workers", "0",
                 "--optimizer", "adam,sgd", "--track", "mlflow", "--devices", "cpu,cpu",
                 "--project", str(project)]) == 0
    sweep_dir = project / "sweep"
    client = mlflow_client(sweep_dir)
    runs = mlflow_runs(client)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(children) == 2 and {c.info.status for c in children.values()} == {"FINISHED"}
    for name, child in children.items():
        history = read_history_csv(sweep_dir / name / "history.csv")
        assert [m.value for m in client.get_metric_history(child.info.run_id, "val_acc")] == [history[0]["val_acc"]]
