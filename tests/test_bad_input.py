"""Bad input and faults thrown at every verb (issue 14): one clear line, the right exit code, nothing
half-made, nothing lost.

Each kind has a table of cases driven through `tledge.cli.main([...])`; each case asserts the exit code,
a message of at most three lines with no traceback, and the file system afterwards. Hypothesis generates
option values; a few cases run `python -m tledge` in a subprocess (OpenCV noise, a kill during a checkpoint
write). Data are tiny (3 classes x 8 images of 32 px) so the whole file stays fast on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CLASS_COLOURS, _class_image
from tledge.cli import main
from tledge.errors import TledgeError

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("red", "green", "blue")
TINY = ["--model", "mobilenet_v2", "--width-mult", "0.25", "--weights", "none", "--img-size", "32",
        "--batch-size", "8", "--workers", "0", "--augment", "none", "--seed", "0"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HYPOTHESIS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------------------------- helpers
def write_images(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for index, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(folder / f"{name}_{i:02d}.png"), _class_image(CLASS_COLOURS[index], 32, rng))
    return root


def truncated_png(path: Path) -> Path:
    ok, data = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))
    path.write_bytes(data.tobytes()[:40])
    return path


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_fails(result, code: int = 2, *fragments: str) -> str:
    """Exit `code`, no traceback, a message of 1-3 lines on stderr naming every fragment."""
    got, out, err = result
    assert got == code, f"exit {got}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def tree(folder: Path) -> set[str]:
    """Every path under `folder`, relative (what exists afterwards)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")} if folder.exists() else set()


# --------------------------------------------------------------------------------------------- shared run
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A trained 1-epoch run with export/model.onnx, its data, and a file to aim output options at."""
    root = tmp_path_factory.mktemp("bad_input")
    data = write_images(root / "data")
    assert main(["train", str(data), *TINY, "--epochs", "1", "--project", str(root / "runs"), "--name", "base"]) == 0
    run = root / "runs" / "base"
    assert main(["export", str(run), "--formats", "onnx", "--no-parity"]) == 0
    (root / "a_file.txt").write_text("not a folder\n")
    return {"root": root, "data": data, "run": run, "onnx": run / "export" / "model.onnx",
            "image": data / "red" / "red_00.png", "file": root / "a_file.txt"}


# --------------------------------------------------------------------------------------------- kind 1
def test_option_ranges_table(base, capsys, tmp_path):
    """Option values out of range stop before any work (more cases arrive with typed options)."""
    b = base
    cases = [
        (["train", b["data"], "--epochs", "0", "--project", tmp_path / "p"], "--epochs"),
        (["train", b["data"], "--batch-size", "-1", "--project", tmp_path / "p"], "--batch-size"),
        (["train", b["data"], "--split", "0.5,0.5", "--project", tmp_path / "p"], "--split"),
        (["predict", b["onnx"], b["image"], "--topk", "0"], "--topk"),
        (["predict", b["onnx"], b["image"], "--batch", "0"], "--batch"),
        (["bench", b["onnx"], "--batch", "0,-3", "--out", tmp_path / "bench"], "--batch"),
        (["export", b["run"], "--formats", "onnx,bogus", "--out", tmp_path / "x"], "bogus"),
        # ranges declared in the options objects (tledge.options), checked before any work
        (["export", b["run"], "--formats", "onnx", "--opset", "99", "--out", tmp_path / "x"], "--opset"),
        (["train", b["data"], "--dropout", "1.5", "--project", tmp_path / "p"], "--dropout"),
        (["train", b["data"], "--lr", "-1", "--project", tmp_path / "p"], "--lr"),
        (["train", b["data"], "--workers", "-1", "--project", tmp_path / "p"], "--workers"),
        (["train", b["data"], "--width-mult", "0", "--project", tmp_path / "p"], "--width-mult"),
        (["train", b["data"], "--label-smoothing", "1", "--project", tmp_path / "p"], "--label-smoothing"),
        (["train", b["data"], "--img-size", "4", "--project", tmp_path / "p"], "--img-size"),
        (["predict", b["onnx"], b["image"], "--max-frames", "0"], "--max-frames"),
        (["bench", b["onnx"], "--iters", "0", "--out", tmp_path / "bench"], "--iters"),
    ]
    for args, fragment in cases:
        assert_fails(cli(capsys, *args), 2, fragment)
    assert tree(tmp_path) == set()  # nothing made by any of them


@HYPOTHESIS
@given(topk=st.integers(max_value=0), batch=st.integers(min_value=1, max_value=4))
def test_generated_topk_values(base, capsys, topk, batch):
    assert_fails(cli(capsys, "predict", base["onnx"], base["image"], "--topk", topk, "--batch", batch), 2, "--topk")


@HYPOTHESIS
@given(ratios=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=4))
def test_generated_split_values_fail_before_any_folder(base, capsys, tmp_path, ratios):
    values = [float(r) for r in ratios]
    valid = (len(values) == 3 and all(np.isfinite(v) and v >= 0 for v in values) and values[0] > 0
             and abs(sum(values) - 1.0) <= 1e-6)
    if valid:
        return
    project = tmp_path / "gen"
    text = ",".join(repr(v) for v in values)
    assert_fails(cli(capsys, "train", base["data"], *TINY, "--split", text, "--project", project), 2, "split")
    assert not project.exists()


# --------------------------------------------------------------------------------------------- kind 2
def test_output_paths_table(base, capsys, tmp_path):
    """A file where a folder is needed, a folder where a file is, a file as a parent: exit 2 before work."""
    b = base
    folder = tmp_path / "a_folder"
    folder.mkdir()
    file_ = b["file"]
    before_run = tree(b["run"])
    cases = [
        (["predict", b["onnx"], b["image"], "--json", folder], "--json", "is a folder"),
        (["predict", b["onnx"], b["image"], "--csv", file_ / "p.csv"], "--csv", "is a file, not a folder"),
        (["predict", b["onnx"], b["image"], "--summary-json", folder], "--summary-json", "is a folder"),
        (["predict", b["onnx"], b["image"], "--save", file_], "--save", "a folder is needed"),
        (["predict", b["onnx"], b["image"], "--save", file_ / "out.mp4"], "--save", "is a file, not a folder"),
        (["export", b["run"], "--formats", "onnx", "--out", file_], "--out", "a folder is needed"),
        (["export", b["run"], "--formats", "int8", "--calib-images", "32", "--report", folder, "--out",
          tmp_path / "never"], "--report", "is a folder"),
        (["bench", b["onnx"], "--out", file_, "--iters", "1"], "--out", "a folder is needed"),
        (["eval", b["run"], "--json", folder], "--json", "is a folder"),
        (["train", b["data"], *TINY, "--project", file_], "--project", "a folder is needed"),
        (["train", b["data"], *TINY, "--project", file_ / "deeper"], "--project", "is a file, not a folder"),
        (["sweep", b["data"], "--models", "mobilenet_v2", "--epochs", "1", "--project", file_], "--project",
         "a folder is needed"),
        (["sweep", b["data"], "--models", "mobilenet_v2", "--epochs", "1", "--project", tmp_path / "s", "--name",
          "../out"], "--name", "plain folder name"),
    ]
    for args, option, fragment in cases:
        err = assert_fails(cli(capsys, *args), 2, option, fragment)
        assert str(args[args.index(option) + 1]) in err  # the message names the value too
    assert tree(folder) == set() and not (tmp_path / "never").exists() and not (tmp_path / "s").exists()
    assert tree(b["run"]) == before_run  # no eval/, bench/ or export files appeared
    assert file_.read_text() == "not a folder\n"


def test_eval_folder_taken_by_a_file(base, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base["run"], run, ignore=shutil.ignore_patterns("export"))
    (run / "eval").write_text("a file where eval/ goes\n")
    assert_fails(cli(capsys, "eval", run), 2, "eval folder", "a folder is needed")
    assert (run / "eval").read_text() == "a file where eval/ goes\n"


def test_missing_parent_folders_are_created(base, capsys, tmp_path):
    out = tmp_path / "new" / "deeper"
    code, _, err = cli(capsys, "predict", base["onnx"], base["image"], "--json", out / "p.jsonl",
                       "--summary-json", out / "s.json", "--warmup", "0")
    assert code == 0, err
    assert json.loads((out / "p.jsonl").read_text().splitlines()[0])["label"] in CLASSES
    assert json.loads((out / "s.json").read_text())["items"] == 1


@pytest.mark.skipif(IS_ROOT, reason="root may write into read-only folders, so permissions cannot be tested")
def test_unwritable_folders(base, capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert_fails(cli(capsys, "predict", base["onnx"], base["image"], "--json", locked / "p.jsonl"), 2,
                     "--json", "permission denied")
        assert_fails(cli(capsys, "train", base["data"], *TINY, "--project", locked / "runs"), 2, "--project",
                     "permission denied")
        assert_fails(cli(capsys, "export", base["run"], "--formats", "onnx", "--out", locked), 2, "--out",
                     "permission denied")
    finally:
        locked.chmod(stat.S_IRWXU)
    assert tree(locked) == set()


def test_unwritable_folders_as_the_permission_check_sees_them(base, capsys, tmp_path, monkeypatch):
    """The same cases for root (who may write anywhere): the access check is told the folder is read-only."""
    import tledge.paths as paths

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(paths.os, "access",
                        lambda p, mode: False if Path(p) == locked and mode & os.W_OK else real_access(p, mode))
    assert_fails(cli(capsys, "predict", base["onnx"], base["image"], "--json", locked / "p.jsonl"), 2, "--json",
                 "permission denied")
    assert_fails(cli(capsys, "train", base["data"], *TINY, "--project", locked / "runs"), 2, "--project",
                 "permission denied")
    assert_fails(cli(capsys, "export", base["run"], "--formats", "onnx", "--out", locked), 2, "--out",
                 "permission denied")
    assert tree(locked) == set()


@HYPOTHESIS
@given(name=st.text(max_size=12))
def test_generated_names_stay_inside_the_project(tmp_path, name):
    from tledge.paths import check_name_inside

    project = tmp_path / "runs"
    try:
        check_name_inside(project, name)
    except TledgeError as exc:
        assert "--name" in str(exc) and len(str(exc).splitlines()) == 1
        return
    assert (project / name).resolve().parent == project.resolve()


# --------------------------------------------------------------------------------------------- kind 3
def test_half_made_runs_table(base, capsys, tmp_path):
    """Nothing of a run exists until it can start; --name cannot leave --project."""
    project = tmp_path / "deep" / "runs"
    cases = [
        (["--name", "../../escaped"], "--name"),
        (["--name", "a/b"], "--name"),
        (["--name", "ok", "--model", "resnet9000"], "resnet9000"),
        (["--name", "ok", "--freeze", "stages:99"], "stages"),
        (["--name", "ok", "--split", "1,0,0"], "val"),
        (["--name", "ok", "--kfold", "20"], "k-fold"),
    ]
    for extra, fragment in cases:
        assert_fails(cli(capsys, "train", base["data"], *TINY, "--epochs", "1", "--project", project, *extra),
                     2, fragment)
        assert not (tmp_path / "deep").exists(), (extra, tree(tmp_path))
    assert not (tmp_path / "escaped").exists()
    # the name that failed is free: the same --name trains now, without --exist-ok
    code, _, err = cli(capsys, "train", base["data"], *TINY, "--epochs", "1", "--project", project, "--name", "ok")
    assert code == 0, err
    assert (project / "ok" / "best.pt").is_file()


def test_interrupt_before_first_checkpoint_leaves_no_folder(base, tmp_path, monkeypatch):
    from tledge.training import epochs

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(epochs, "train_one_epoch", stop)
    assert main(["train", str(base["data"]), *TINY, "--epochs", "1", "--project", str(tmp_path / "r"),
                 "--name", "x"]) == 130
    assert tree(tmp_path / "r") == set()


# --------------------------------------------------------------------------------------------- kind 4
def test_export_records_the_checkpoint_hash(base):
    from tledge.card import card_from_onnx
    from tledge.staleness import file_sha256

    assert card_from_onnx(base["onnx"]).checkpoint_sha256 == file_sha256(base["run"] / "best.pt")


def test_stale_artifacts_warned_in_predict_and_refused_in_bench(base, capsys, tmp_path):
    from tledge.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    state = load_checkpoint(run / "best.pt")
    state["epoch"] = 99  # a retrained best.pt: other bytes
    save_checkpoint(run / "best.pt", state)
    code, out, err = cli(capsys, "predict", run / "export" / "model.onnx", base["image"], "--warmup", "0")
    assert code == 0
    assert "warning: model.onnx was exported from another checkpoint" in out + err
    assert f"tledge export {run}" in out + err
    err = assert_fails(cli(capsys, "bench", run, "--iters", "1", "--warmup", "0", "--batch", "1"), 2, "stale")
    bench = json.loads((run / "bench" / "bench.json").read_text())
    assert {r["artifact"]: r["status"] == "ok" for r in bench["rows"]} == {"best.pt": True, "model.onnx": False}


def interrupted_run(data: Path, project: Path, name: str, epochs: int, kfold: int = 0) -> Path:
    """A run stopped by Ctrl-C after its first epoch (last.pt holds epoch 1)."""
    from tledge.training.config import TrainConfig
    from tledge.training.fit import train_run
    from tledge.training.kfold import run_kfold

    def stop(epoch, _row):
        if epoch == 0:
            raise KeyboardInterrupt

    config = TrainConfig(data=str(data), project=str(project), name=name, model="mobilenet_v2", weights="none",
                         arch_kwargs={"width_mult": 0.25}, img_size=32, batch_size=8, epochs=epochs, workers=0,
                         augment="none", kfold=kfold)
    if kfold:
        import tledge.training.kfold as kfold_mod

        original = kfold_mod.train_run
        kfold_mod.train_run = lambda *a, **k: original(*a, **{**k, "on_epoch_end": stop})
        try:
            run_kfold(config)
        finally:
            kfold_mod.train_run = original
    else:
        train_run(config, on_epoch_end=stop)
    return project / name


def test_resume_refuses_changed_data_unless_forced(base, capsys, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(base["data"], data)
    run = interrupted_run(data, tmp_path / "runs", "r", epochs=2)
    assert (run / "last.pt").is_file()
    cv2.imwrite(str(data / "red" / "added.png"), _class_image(CLASS_COLOURS[0], 32, np.random.default_rng(9)))
    before = (run / "last.pt").read_bytes()
    assert_fails(cli(capsys, "train", "--resume", run), 2, "changed since", "--force")
    assert (run / "last.pt").read_bytes() == before  # refused before anything was touched
    code, _, err = cli(capsys, "train", "--resume", run, "--force")
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    assert_fails(cli(capsys, "train", base["data"], "--force", "--project", tmp_path / "p"), 2, "--force")


def test_resuming_one_fold_resumes_that_fold_without_nesting(base, capsys, tmp_path):
    run = interrupted_run(base["data"], tmp_path / "runs", "kf", epochs=2, kfold=2)
    fold = run / "fold1"
    assert (fold / "last.pt").is_file() and not (fold / "metrics.json").exists()
    code, _, err = cli(capsys, "train", "--resume", fold)
    assert code == 0, err
    assert not (fold / "fold1").exists() and not (fold / "kfold.json").exists()
    assert json.loads((fold / "metrics.json").read_text())["epochs_run"] == 2
    assert not (run / "fold2").exists()  # only that fold ran


# --------------------------------------------------------------------------------------------- kind 5
def test_exit_code_table_in_help(capsys):
    from tledge.errors import EXIT_CODES

    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "Exit codes" in out
    assert {0, 1, 2, 3, 130} <= set(EXIT_CODES)
    for number, meaning in EXIT_CODES.items():
        assert f"{number:>3}  {meaning}" in out, number
    assert EXIT_CODES[1].startswith("a bug") and EXIT_CODES[130].startswith("interrupted")


def test_exit_codes_table(base, capsys, tmp_path):
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    truncated_png(unreadable / "a.png")
    (unreadable / "b.jpg").write_bytes(b"")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not a protobuf")
    foreign = tmp_path / "foreign.onnx"
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(graph), str(foreign))
    sweep_project = tmp_path / "sweeps"
    cases = [
        (["predict", base["onnx"], unreadable, "--warmup", "0"], "none of the 2 input(s)"),
        (["bench", garbage, "--iters", "1", "--warmup", "0", "--batch", "1", "--out", tmp_path / "b1"], "garbage.onnx"),
        (["bench", foreign, "--iters", "1", "--warmup", "0", "--batch", "1", "--out", tmp_path / "b2"], "foreign.onnx"),
        (["sweep", base["data"], "--models", "mobilenet_v2", "--epochs", "1", "--devices", "7", "--project",
          sweep_project], "--devices"),
    ]
    for args, fragment in cases:
        assert_fails(cli(capsys, *args), 2, fragment)
    assert not sweep_project.exists()  # refused before the sweep folder was made


def test_ctrl_c_in_predict_exits_130_with_summary(base, capsys, tmp_path, monkeypatch):
    from tledge.runtime import predict as predict_mod

    real = predict_mod.topk_records
    calls = {"n": 0}

    def interrupt_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_mod, "topk_records", interrupt_on_second)
    summary = tmp_path / "summary.json"
    code, _, err = cli(capsys, "predict", base["onnx"], base["data"] / "red", "--warmup", "0",
                       "--summary-json", summary)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    facts = json.loads(summary.read_text())
    assert facts["interrupted"] is True and facts["items"] == 1


# --------------------------------------------------------------------------------------------- kind 6
def test_every_skipped_training_file_is_counted_with_its_reason(base, tmp_path):
    from tledge.datasets.folders import build_splits

    data = tmp_path / "data"
    shutil.copytree(base["data"], data)
    (data / "red" / "animated.gif").write_bytes(b"GIF89a")
    (data / "green" / "notes.txt").write_text("hello")
    truncated_png(data / "blue" / "cut.png")
    splits, report = build_splits(data, (0.8, 0.1, 0.1), 0)
    reasons = dict(report.skipped)
    assert set(reasons) == {"red/animated.gif", "green/notes.txt", "blue/cut.png"}
    assert reasons["red/animated.gif"].startswith("unsupported file type .gif")
    assert reasons["green/notes.txt"].startswith("unsupported file type .txt")
    assert "truncated PNG" in reasons["blue/cut.png"]
    assert sorted(splits.skipped) == sorted(reasons)
    lines = report.summary_lines()
    assert "skipped 1 unreadable file(s):" in lines and "skipped 2 unsupported-type file(s):" in lines


def test_predict_counts_skipped_files_of_other_types(base, capsys, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(base["image"], folder / "ok.png")
    (folder / "clip.gif").write_bytes(b"GIF89a")
    summary = tmp_path / "s.json"
    code, out, err = cli(capsys, "predict", base["onnx"], folder, "--warmup", "0", "--summary-json", summary)
    assert code == 0, err
    facts = json.loads(summary.read_text())
    assert facts["items"] == 1 and facts["skipped"] == 1
    assert facts["skipped_items"][0]["error"] == "unsupported file type .gif"
    assert "clip.gif: unsupported file type .gif" in out


def test_bench_names_test_images_that_became_unreadable(base, capsys, tmp_path):
    """A run's test split read back from splits.json: an image damaged since training is named, not dropped."""
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(base["data"], data)
    shutil.copytree(base["run"], run, ignore=shutil.ignore_patterns("export"))
    splits = json.loads((run / "splits.json").read_text())
    splits["root"] = str(data)
    (run / "splits.json").write_text(json.dumps(splits))
    damaged = data / splits["test"][0][0]
    truncated_png(damaged)
    code, out, err = cli(capsys, "bench", run, "--iters", "1", "--warmup", "0", "--batch", "1", "--out", tmp_path / "b")
    assert code == 0, err
    assert f"accuracy on 2 images of {run}/splits.json:test (1 unreadable skipped, e.g. {damaged}" in out
    facts = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert facts["eval_skipped"] == [{"source": str(damaged), "error": "not a readable image"}]


# --------------------------------------------------------------------------------------------- kind 7
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writer_respects_the_umask(tmp_path, umask, mode):
    from tledge.atomic import atomic_write_bytes

    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "card.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "card.json").stat().st_mode) == mode


def test_stale_temp_files_cleaned_on_next_export(base, capsys, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / ".model.onnx.k1ll3d.tmp").write_bytes(b"half")
    (out / "keep.tmp").write_text("not ours")  # not the atomic writer's pattern: left alone
    code, _, err = cli(capsys, "export", base["run"], "--formats", "onnx", "--no-parity", "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["DEPLOY.md", "deepstream", "keep.tmp", "labels.txt", "model.onnx",
                                                     "triton"]  # + the deployment files every export writes


# --------------------------------------------------------------------------------------------- kind 8
def test_no_opencv_warnings_for_unreadable_files(base, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    shutil.copy(base["image"], folder / "ok.png")
    truncated_png(folder / "cut.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tledge", "predict", str(base["onnx"]), str(folder), "--warmup", "0"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "WARN" not in proc.stderr + proc.stdout
    assert "cut.png: not a readable image" in proc.stdout
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    env.pop("OPENCV_FFMPEG_LOGLEVEL", None)
    proc = subprocess.run([sys.executable, "-m", "tledge", "predict", str(base["onnx"]), str(broken)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: {broken}: cannot open this video (unsupported codec or "
                                                "damaged file)"]


# --------------------------------------------------------------------------------------------- fault injection
CRASHING_TRAINER = textwrap.dedent('''
    """Train 2 epochs; on the 2nd write of last.pt, stop halfway through the temp file and wait to be killed."""
    import os, sys, time
    import torch

    real_save = torch.save
    writes = {"last": 0}

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f = getattr(f, "name", f)  # save_checkpoint hands torch an open file
        if os.path.basename(str(f)).startswith(".last.pt."):
            writes["last"] += 1
            if writes["last"] == 2:
                with open(f, "r+b") as handle:
                    handle.truncate(os.path.getsize(f) // 2)
                print("KILL-ME", flush=True)
                time.sleep(300)

    torch.save = save
    from tledge.training.config import TrainConfig
    from tledge.training.fit import train_run

    train_run(TrainConfig(data=sys.argv[1], project=sys.argv[2], name="crash", model="mobilenet_v2",
                          weights="none", arch_kwargs={"width_mult": 0.25}, img_size=32, batch_size=8, epochs=2,
                          workers=0, augment="none"))
''')


def test_kill_during_checkpoint_write_then_resume(base, capsys, tmp_path):
    from tledge.checkpoint import load_checkpoint

    script = tmp_path / "crashing_trainer.py"
    script.write_text(CRASHING_TRAINER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(base["data"]), str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "KILL-ME", line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    run = tmp_path / "runs" / "crash"
    leftovers = list(run.glob(".last.pt.*.tmp"))
    assert len(leftovers) == 1  # the half-written temp file
    assert load_checkpoint(run / "last.pt")["epoch"] == 0  # the previous good checkpoint is intact
    code, _, err = cli(capsys, "train", "--resume", run)
    assert code == 0, err
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert load_checkpoint(run / "best.pt")["card"]["class_names"] == sorted(CLASSES)
