"""`tledge sweep` on Optuna, on tiny generated images (1-5 epochs, 32 px): two workers sharing one SQLite
study run every cell once, a killed worker leaves the study resumable, a TPE search keeps its trial budget,
the chosen cell is chosen on val accuracy only, and bad study options are one line (exit 2, nothing written).
The trials are read back with Optuna's own API."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from tledge.cli import main  # noqa: E402
from tledge.training import sweep, sweep_study  # noqa: E402
from tledge.training.config import TrainConfig  # noqa: E402
from tledge.training.sweep_results import results_table, write_results  # noqa: E402
from test_sweep import data  # noqa: E402,F401 - the 12-images-per-class fixture, shared

TINY = ["--models", "resnet18", "--weights", "none", "--img-size", "32", "--batch-size", "8", "--augment", "none",
        "--epochs", "1", "--workers", "0", "--lr", "1e-3"]
TINY_CONFIG = dict(model="resnet18", weights="none", img_size=32, batch_size=8, augment="none", epochs=1,
                   workers=0, lr=1e-3)
ROOT = Path(__file__).resolve().parents[1]
COMPLETE = optuna.trial.TrialState.COMPLETE


def worker(sweep_dir: Path) -> subprocess.Popen:
    """One more `tledge sweep --resume SWEEP_DIR` process: a worker of the folder's study."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tledge", "sweep", "--resume", str(sweep_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def completed_cells(sweep_dir: Path, storage=None) -> list[str]:
    return sorted(t.user_attrs["cell"] for t in sweep_study.study_trials(sweep_dir, storage) if t.state == COMPLETE)


def run_two_workers(data, project, storage=None):
    base = TrainConfig(data=str(data), **TINY_CONFIG)
    sweep_dir, cells = sweep.start_sweep(base, {"freeze": ["none", "all"], "optimizer": ["adam", "sgd"]}, project,
                                         study={"search": "grid", "trials": None, "storage": storage})
    workers = [worker(sweep_dir) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    names = sorted(c.name for c in cells)
    trials = sweep_study.study_trials(sweep_dir, storage)
    assert completed_cells(sweep_dir, storage) == names  # each cell exactly once …
    assert [t.state for t in trials] == [COMPLETE] * len(names)  # … and no other trial (no duplicate)
    assert len({t.user_attrs["pid"] for t in trials}) <= 2
    for name in names:
        assert (sweep_dir / name / "metrics.json").is_file()
        value = json.loads((sweep_dir / name / "metrics.json").read_text())["best_val_acc"]
        assert [t.value for t in trials if t.user_attrs["cell"] == name] == [pytest.approx(value)]
    return sweep_dir, outputs


def test_two_workers_share_one_sqlite_study_and_run_each_cell_once(data, tmp_path):
    sweep_dir, outputs = run_two_workers(data, tmp_path / "runs")
    assert (sweep_dir / "study.db").is_file()
    result = json.loads((sweep_dir / "results.json").read_text())
    assert result["best"]["chosen_by"] == "val_acc"
    assert result["best"]["export"] == f"tledge export {sweep_dir / result['best']['cell']}"


def postgres_binaries() -> tuple[str, str] | None:
    """(initdb, pg_ctl): on PATH, or where Debian's postgresql puts them (/usr/lib/postgresql/N/bin)."""
    import glob
    import shutil

    for folder in [None, *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        initdb, pg_ctl = (shutil.which(name, path=folder) for name in ("initdb", "pg_ctl"))
        if initdb and pg_ctl:
            return initdb, pg_ctl
    return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server (initdb + pg_ctl in a temp folder, trust auth on 127.0.0.1, a free port),
    stopped and removed afterwards; or the server TLEDGE_TEST_POSTGRES_URL names. PostgreSQL refuses to run
    as root, so as root the server runs as the `postgres` user (runuser)."""
    import shutil
    import tempfile

    if os.environ.get("TLEDGE_TEST_POSTGRES_URL"):
        yield os.environ["TLEDGE_TEST_POSTGRES_URL"]
        return
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql (.ci/run does) "
                    "or set TLEDGE_TEST_POSTGRES_URL=postgresql://user:pw@host/db")
    try:
        import psycopg  # noqa: F401 - SQLAlchemy 2's driver for postgresql:// URLs
    except ImportError:
        pytest.fail("psycopg is missing (part of the dev extra): pip install -e '.[dev]'")
    initdb, pg_ctl = binaries
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tledge-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, and there is no postgres user to run the server as")
        as_user = [shutil.which("runuser") or "runuser", "-u", "postgres", "--"]
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, text=True)
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} -c fsync=off"
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w",
                        "start"], check=True, capture_output=True, text=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        said = exc.stderr or exc.stdout
        pytest.fail(f"could not start a throwaway PostgreSQL server: {exc.cmd[len(as_user)]} said: {said}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(data, tmp_path, postgres_url):
    sweep_dir, _ = run_two_workers(data, tmp_path / "runs", storage=postgres_url)
    assert not (sweep_dir / "study.db").exists()  # the study is on the server
    assert sweep_study.study_name(sweep_dir, postgres_url) in optuna.get_all_study_names(postgres_url)


def test_killed_worker_leaves_the_study_resumable(data, tmp_path, capsys):
    base = TrainConfig(data=str(data), **TINY_CONFIG)
    sweep_dir, cells = sweep.start_sweep(base, {"epochs": [10, 1]}, tmp_path / "runs",
                                         study={"search": "grid", "trials": None, "storage": None})
    process = worker(sweep_dir)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # kill it once it trains the long cell's second epoch
            history = sweep_dir / cells[0].name / "history.csv"
            if history.is_file() and len(history.read_text().splitlines()) >= 2:
                break
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate(timeout=60)
    # GridSampler orders the grid by value, so the short cell may have finished before the long one started
    (killed,) = [t for t in sweep_study.study_trials(sweep_dir) if t.state == optuna.trial.TrialState.RUNNING]
    assert killed.user_attrs["cell"] == cells[0].name
    assert not (sweep_dir / cells[0].name / "metrics.json").exists()

    assert main(["sweep", "--resume", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "its worker" in out and "queued again" in out
    trials = sweep_study.study_trials(sweep_dir)
    assert trials[killed.number].state == optuna.trial.TrialState.FAIL
    assert completed_cells(sweep_dir) == sorted(c.name for c in cells)
    for cell in cells:
        assert (sweep_dir / cell.name / "metrics.json").is_file()


def test_tpe_search_keeps_its_trial_budget_and_names_the_best_cell(data, tmp_path, capsys):
    project = tmp_path / "runs"
    assert main(["sweep", str(data), *TINY, "--freeze", "none,all", "--optimizer", "adam,sgd", "--search", "tpe",
                 "--trials", "3", "--project", str(project)]) == 0
    out = capsys.readouterr().out
    sweep_dir = project / "sweep"
    trials = sweep_study.study_trials(sweep_dir)
    # the budget is 3 distinct cells: a suggestion of a cell already tried records its value again, for free
    assert len({t.user_attrs["cell"] for t in trials}) == 3 and all(t.state.is_finished() for t in trials)
    assert set(trials[0].params) == {"freeze", "optimizer"}
    result = json.loads((sweep_dir / "results.json").read_text())
    done = [c for c in result["cells"] if c["status"] == "done"]
    best = max(done, key=lambda c: c["val_acc"])
    assert result["best"]["cell"] == best["cell"]
    assert f"export it with: tledge export {sweep_dir / best['cell']}" in out
    assert {c["cell"] for c in result["cells"]} == {t.user_attrs["cell"] for t in trials}


def test_choice_ignores_test_accuracy(tmp_path):
    rows = [{"cell": "a", "status": "done", "val_acc": 0.90, "test_acc": 0.50, "run_dir": str(tmp_path / "a")},
            {"cell": "b", "status": "done", "val_acc": 0.80, "test_acc": 1.00, "run_dir": str(tmp_path / "b")},
            {"cell": "c", "status": "failed", "val_acc": None, "test_acc": None, "run_dir": str(tmp_path / "c")},
            {"cell": "d", "status": "pruned", "val_acc": 0.95, "test_acc": 0.99, "run_dir": str(tmp_path / "d")}]
    best = sweep_study.mark_best(rows)
    assert best["cell"] == "a"
    assert [row["chosen"] for row in rows] == [True, False, False, False]
    assert [shown["chosen"] for shown in results_table(rows)] == ["*", "", "", ""]
    write_results(rows, tmp_path, plot=False, best=best)
    assert json.loads((tmp_path / "results.json").read_text())["best"] == {
        "cell": "a", "val_acc": 0.90, "test_acc": 0.50, "chosen_by": "val_acc",
        "export": f"tledge export {tmp_path / 'a'}"}
    text = (tmp_path / "results.md").read_text()
    assert "not used for choosing" in text and f"`tledge export {tmp_path / 'a'}`" in text
    assert "test acc 0.5000 (reported, not used for choosing)" in sweep_study.summary(best)


def test_unknown_search_is_clicks_usage_error_and_nothing_written(data, tmp_path, capsys):
    project = tmp_path / "runs"
    assert main(["sweep", str(data), *TINY, "--search", "random", "--project", str(project)]) == 2
    assert "Invalid value for '--search': 'random' is not one of 'grid', 'tpe'" in capsys.readouterr().err
    assert not project.exists()


@pytest.mark.parametrize("options", [
    ["--search", "tpe", "--trials", "0"],
    ["--trials", "3"],
    ["--storage", "not a url"],
    ["--storage", "postgresql://user:pw@127.0.0.1:1/nodb"],  # no driver, or nothing listening: either way
])
def test_bad_study_options_are_one_line_exit_2_and_nothing_written(data, tmp_path, capsys, options):
    project = tmp_path / "runs"
    assert main(["sweep", str(data), *TINY, "--freeze", "none,all", *options, "--project", str(project)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert not project.exists()


def test_missing_optuna_is_one_line(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna → ImportError
    project = tmp_path / "runs"
    assert main(["sweep", str(data), *TINY, "--project", str(project)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optuna" in err[0] and "tledge[sweep]" in err[0], err
    assert not project.exists()


def test_pruned_trials_stop_training_and_are_not_chosen(data, tmp_path, capsys, monkeypatch):
    """A pruner that stops every trial at its first report: each cell stops after epoch 1, its trial is
    PRUNED, its row says so, and nothing is chosen."""
    monkeypatch.setattr(sweep_study, "search_pruner", lambda optuna: optuna.pruners.ThresholdPruner(lower=2.0))
    project = tmp_path / "runs"
    assert main(["sweep", str(data), *TINY, "--epochs", "2", "--freeze", "none,all", "--search", "tpe",
                 "--trials", "2", "--project", str(project)]) == 0
    out = capsys.readouterr().out
    sweep_dir = project / "sweep"
    trials = sweep_study.study_trials(sweep_dir)
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert list(trials[0].intermediate_values) == [1]  # a later trial of the same cell resumes at epoch 2
    assert all(len(t.intermediate_values) == 1 for t in trials)
    result = json.loads((sweep_dir / "results.json").read_text())
    assert {c["status"] for c in result["cells"]} == {"pruned"} and result["best"] is None
    assert "pruned after epoch 1" in out and "no cell finished: nothing to choose" in out
    for cell in result["cells"]:
        assert not (sweep_dir / cell["cell"] / "metrics.json").exists()


def test_a_small_search_budget_is_mostly_tpe_not_random_draws():
    from tledge.training.sweep_study import startup_trials

    assert [startup_trials(n) for n in (1, 6, 8, 9, 30, 100)] == [2, 2, 2, 3, 10, 10]


def test_views_are_a_grid_axis_with_their_own_name_token():
    from tledge.training.sweep_grid import expand_grid
    from tledge.training.config import TrainConfig

    cells = expand_grid(TrainConfig(data="x"), {"cache_views": ["1", "2"]})
    assert [c.name for c in cells] == ["mobilenet_v2-views1", "mobilenet_v2-views2"]
    assert [c.config.cache_views for c in cells] == [1, 2]


def test_a_search_budget_counts_distinct_cells_and_a_busy_cell_is_not_trained_twice():
    from tledge.training import sweep_study

    study = optuna.create_study(direction="maximize")
    dist = optuna.distributions.CategoricalDistribution(["a", "b", "c"])
    for cell, state in (("a", "COMPLETE"), ("a", "COMPLETE"), ("b", "PRUNED")):
        study.add_trial(optuna.trial.create_trial(params={"cell": cell}, distributions={"cell": dist},
                                                  value=0.5 if state == "COMPLETE" else None,
                                                  state=getattr(optuna.trial.TrialState, state),
                                                  user_attrs={"cell": cell}))
    assert sweep_study._tried_cells(study) == {"a", "b"}
    assert sweep_study._budget_left(study, trials=3, cells=3)  # three trials, but only two cells tried
    assert not sweep_study._budget_left(study, trials=2, cells=3)
    assert not sweep_study._budget_left(study, trials=8, cells=2)  # never more than the grid holds
    running = study.ask()
    running.set_user_attr("cell", "c")
    assert sweep_study._tried_cells(study, running_only=True) == {"c"}
