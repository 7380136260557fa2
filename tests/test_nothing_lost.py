"""Nothing lost, nothing silent (issue 22), one section per kind of the issue: (1) outputs never replace
device nodes, FIFOs or symlinks; (2) never destroy an input or another output; (3) SIGTERM behaves as
Ctrl-C; (4) artifacts are checked when they load; (5) options stay finite and bounded; (6) a full disk,
an I/O error or a name too long is one line; (7) the Python API raises TledgeError; (8) no silent wrong
results (EXIF orientation, finished runs, classes missing from a split); (9) messages name the option, the
value and the fix.

Each kind is a table of cases. Device nodes are made with os.mknod / os.mkfifo inside pytest's tmp folder
(a character device with /dev/null's or /dev/full's numbers), never the machine's own /dev files; the full
disk is a 4 MiB tmpfs mounted inside tmp_path (skipped where mounting is not allowed).
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from test_bad_input import TINY, assert_fails, base, cli, tree  # noqa: F401 - `base` is the shared run fixture

NULL_DEVICE = os.makedev(1, 3)  # /dev/null's major/minor, made again inside tmp_path
FULL_DEVICE = os.makedev(1, 7)  # /dev/full's: every write fails with ENOSPC
PIPES: dict[Path, tuple[int, int]] = {}  # folder -> (read end, write end) of a "link through /proc" case


# --------------------------------------------------------------------------------------------- helpers
def mknod(path: Path, device: int) -> None:
    """A character device node in the test's folder; skipped where creating one is not allowed (not root)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, device)
    except PermissionError:
        pytest.skip("creating a device node needs root (CAP_MKNOD)")


def make_node(folder: Path, kind: str) -> Path:
    """A path of the given kind in `folder`; links point at files/nodes made beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "char device":
        path = folder / "null"
        mknod(path, NULL_DEVICE)
    elif kind == "full device":
        path = folder / "full"
        mknod(path, FULL_DEVICE)
    elif kind == "fifo":
        path = folder / "pipe"
        os.mkfifo(path)
    elif kind == "link to a file":
        (folder / "target.txt").write_text("old\n")
        path = folder / "link"
        os.symlink("target.txt", path)
    elif kind == "link to a char device":
        mknod(folder / "null", NULL_DEVICE)
        path = folder / "link"
        os.symlink(folder / "null", path)
    elif kind == "dangling link":
        path = folder / "link"
        os.symlink("not-yet.txt", path)
    elif kind == "link through /proc":  # as /dev/stdout -> /proc/self/fd/1, here onto a pipe of our own
        read_end, write_end = os.pipe()
        PIPES[folder] = (read_end, write_end)
        path = folder / "stdout"
        os.symlink(f"/proc/self/fd/{write_end}", path)
    elif kind == "chain of links":
        (folder / "target.txt").write_text("old\n")
        os.symlink("target.txt", folder / "hop")
        path = folder / "link"
        os.symlink("hop", path)
    else:
        raise ValueError(kind)
    return path


def snapshot(path: Path) -> tuple:
    """What must not change about the node itself: link or not, where it points, file type, device numbers."""
    if path.is_symlink():
        return ("link", os.readlink(path))
    info = os.lstat(path)
    return (stat.S_IFMT(info.st_mode), info.st_rdev)


class Drain:
    """A reader on a FIFO (a writer blocks until one opens it): collects what was written."""

    def __init__(self, fifo: Path):
        self.data = b""
        self.thread = threading.Thread(target=self._read, args=(fifo,), daemon=True)
        self.thread.start()

    def _read(self, fifo: Path) -> None:
        while True:  # one open per writer; stop at a write that ends (the test's last writer)
            with open(fifo, "rb") as handle:
                self.data += handle.read()
            if self.data:
                return

    def join(self) -> bytes:
        self.thread.join(timeout=60)
        return self.data


def delivered(path: Path, kind: str, drain: Drain | None) -> bytes | None:
    """The bytes the output reached, where they can be seen (a char device swallows them)."""
    if kind == "fifo":
        return drain.join()
    if kind in ("link to a file", "chain of links"):
        return (path.parent / "target.txt").read_bytes()
    if kind == "dangling link":
        return (path.parent / "not-yet.txt").read_bytes()
    if kind == "link through /proc":
        read_end, write_end = PIPES.pop(path.parent)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as handle:
            return handle.read()
    return None


NODE_KINDS = ["char device", "fifo", "link to a file", "link to a char device", "dangling link", "chain of links",
              "link through /proc"]


# --------------------------------------------------------------------------------------------- kind 1
def _writers():
    from tledge.atomic import atomic_write_bytes, atomic_write_with, write_json
    from tledge.card import atomic_write_text

    return {
        "write_json": (lambda p: write_json(p, {"ok": 1}), b'{\n  "ok": 1\n}\n'),
        "atomic_write_bytes": (lambda p: atomic_write_bytes(p, b"bytes\n"), b"bytes\n"),
        "atomic_write_with": (lambda p: atomic_write_with(p, lambda tmp: tmp.write_bytes(b"with\n")), b"with\n"),
        "atomic_write_text": (lambda p: atomic_write_text(p, "text\n"), b"text\n"),
    }


@pytest.mark.parametrize("writer", ["write_json", "atomic_write_bytes", "atomic_write_with", "atomic_write_text"])
@pytest.mark.parametrize("kind", NODE_KINDS)
def test_atomic_writers_write_through_nodes_and_links(tmp_path, kind, writer):
    write, expected = _writers()[writer]
    path = make_node(tmp_path / "out", kind)
    before = snapshot(path)
    drain = Drain(path) if kind == "fifo" else None
    write(path)
    assert snapshot(path) == before  # still the same device / FIFO / link
    got = delivered(path, kind, drain)
    if got is not None:
        assert got == expected
    assert not list(tmp_path.rglob(".*.tmp"))  # no temp file left beside it


def test_cli_outputs_write_through_nodes_and_links(base, capsys, tmp_path):
    """Every verb's file outputs aimed at a device, a FIFO or a link: exit 0, the node is still there."""
    b = base
    image = b["image"]
    cases = [
        (["eval", b["run"], "--json", "{node}"], "--json", "char device"),
        (["eval", b["run"], "--json", "{node}"], "--json", "link to a file"),
        (["predict", b["onnx"], image, "--warmup", "0", "--summary-json", "{node}"], "--summary-json", "char device"),
        (["predict", b["onnx"], image, "--warmup", "0", "--summary-json", "{node}"], "--summary-json", "fifo"),
        (["predict", b["onnx"], image, "--warmup", "0", "--summary-json", "{node}"], "--summary-json",
         "link to a file"),
        (["predict", b["onnx"], image, "--warmup", "0", "--json", "{node}"], "--json", "char device"),
        (["predict", b["onnx"], image, "--warmup", "0", "--json", "{node}"], "--json", "fifo"),
        (["predict", b["onnx"], image, "--warmup", "0", "--csv", "{node}"], "--csv", "dangling link"),
        (["predict", b["onnx"], image, "--warmup", "0", "--csv", "{node}"], "--csv", "link to a char device"),
        (["predict", b["onnx"], image, "--warmup", "0", "--summary-json", "{node}"], "--summary-json",
         "link through /proc"),
    ]
    for index, (args, option, kind) in enumerate(cases):
        node = make_node(tmp_path / f"case{index}", kind)
        before = snapshot(node)
        drain = Drain(node) if kind == "fifo" else None
        code, out, err = cli(capsys, *[str(a).replace("{node}", str(node)) for a in args])
        assert code == 0, (args, kind, err)
        assert snapshot(node) == before, (args, kind)
        got = delivered(node, kind, drain)
        if got is None:
            continue
        if option == "--csv":
            assert got.decode().splitlines()[0].startswith("path,top1,prob1")
        elif option == "--json" and args[0] == "predict":
            assert json.loads(got.decode().splitlines()[0])["source"] == str(image)
        elif args[0] == "predict":
            assert json.loads(got)["items"] == 1
        else:
            assert json.loads(got)["source"] == str(b["run"])


# --------------------------------------------------------------------------------------------- kind 2
def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (links as where they point)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path)] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path)] = path.read_bytes()
        else:
            found[str(path)] = b"<folder>"
    return found


def test_outputs_never_destroy_inputs_or_each_other(base, capsys, tmp_path):
    """Every verb with outputs: an output that is an input, lies inside an input folder, or shares a path with
    another output is refused with exit 2 before any work, and no file anywhere changes."""
    b = base
    data, run, onnx, image = b["data"], b["run"], b["onnx"], b["image"]
    best = run / "best.pt"
    (tmp_path / "model-link.onnx").symlink_to(onnx)
    os.link(image, tmp_path / "hard-link.png")
    free = tmp_path / "free"
    P = ["predict", onnx]
    cases = [
        # predict: the source image, the model, the source folder, a glob's match, links, two outputs on one path
        ([*P, image, "--csv", image], "--csv", "is the source"),
        ([*P, image, "--summary-json", image], "--summary-json", "is the source"),
        ([*P, image, "--json", onnx], "--json", "is the model"),
        ([*P, image, "--json", tmp_path / "model-link.onnx"], "--json", "is the model"),
        ([*P, image, "--csv", tmp_path / "hard-link.png"], "--csv", "is the source"),
        ([*P, data / "red" / "*.png", "--csv", data / "red" / "red_03.png"], "--csv", "is the source"),
        (["predict", run, image, "--json", best], "--json", "is the model"),
        ([*P, data, "--save", data], "--save", "inside the source"),
        ([*P, data, "--save", data / "annotated"], "--save", "inside the source"),
        ([*P, data, "--summary-json", data / "red" / "summary.json"], "--summary-json", "inside the source"),
        ([*P, data / "red", "--csv", data / "red" / "preds.csv"], "--csv", "inside the source"),
        ([*P, image, "--csv", free / "p.txt", "--json", free / "p.txt"], "--json and --csv", "both name"),
        ([*P, image, "--json", free / "p.txt", "--summary-json", free / "." / "p.txt"], "--json and --summary-json",
         "both name"),
        # eval: the checkpoint, the splits it reads, the DATA folder
        (["eval", run, "--json", best], "--json", "is the model"),
        (["eval", run, "--json", run / "splits.json"], "--json", "the run's splits"),
        (["eval", run, data, "--json", data / "red" / "red_00.png"], "--json", "inside the DATA folder"),
        # export: the checkpoint, the calibration and parity folders
        (["export", best, "--formats", "onnx,int8", "--report", best, "--out", free / "e"], "--report",
         "is the checkpoint"),
        (["export", run, "--formats", "onnx", "--parity-data", data, "--out", data / "export"], "--out",
         "inside --parity-data"),
        (["export", run, "--formats", "onnx,int8", "--calib-data", data, "--calib-images", "32", "--out",
          data / "red" / "x"], "--out", "inside --calib-data"),
        # bench: the data folder
        (["bench", onnx, "--data", data, "--out", data / "bench", "--iters", "1"], "--out", "inside the --data"),
        # train, sweep, demo: runs inside the image folder would become a class
        (["train", data, *TINY, "--epochs", "1", "--project", data / "runs"], "--project", "inside the DATA"),
        (["train", data, *TINY, "--epochs", "1", "--project", data], "--project", "inside the DATA"),
        (["sweep", data, "--models", "mobilenet_v2", "--epochs", "1", "--project", data / "sweeps"], "--project",
         "inside the DATA"),
        (["demo", "--data", data, "--epochs", "1", "--project", data / "runs"], "--project", "inside the DATA"),
    ]
    before = contents(b["root"]), contents(tmp_path)
    for args, option, fragment in cases:
        err = assert_fails(cli(capsys, *args), 2, option.split(" and ")[0], fragment)
        assert "error:" in err, (args, err)
        assert (contents(b["root"]), contents(tmp_path)) == before, args  # nothing touched, nothing made
    assert image.read_bytes() == (tmp_path / "hard-link.png").read_bytes()


def test_outputs_may_share_a_device_node(base, capsys, tmp_path):
    """Device nodes are written through, so several outputs may name one (as /dev/null or /dev/stdout)."""
    node = make_node(tmp_path, "char device")
    code, _, err = cli(capsys, "predict", base["onnx"], base["image"], "--warmup", "0", "--json", node,
                       "--summary-json", node)
    assert code == 0, err
    assert snapshot(node) == (stat.S_IFCHR, NULL_DEVICE)


# --------------------------------------------------------------------------------------------- kind 3
HARNESS = '''
"""Run `tledge ARGS` in this process; on call N of MODULE.NAME print MARK and wait for the test's signal."""
import importlib, sys, time

module_name, attr, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
module = importlib.import_module(module_name)
real = getattr(module, attr)
calls = {"n": 0}

def marked(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == nth:
        print("MARK", flush=True)
        time.sleep(600)  # the signal arrives here
    return real(*args, **kwargs)

setattr(module, attr, marked)
from tledge.cli import main
sys.exit(main(sys.argv[5:]))
'''


def run_until_marked(tmp_path: Path, target: str, nth: int, args: list, signum: int) -> tuple[int, str, str]:
    """`tledge ARGS` in a subprocess, sent `signum` once it reaches call `nth` of `target` (module:attr)."""
    import subprocess
    import sys

    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    module, attr = target.split(":")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(script), module, attr, str(nth), "--", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        for line in proc.stdout:  # wait for the marker, however long the start takes (no wall-clock assert)
            lines.append(line)
            if line.strip() == "MARK":
                os.kill(proc.pid, signum)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + out, err


STOP_SIGNALS = [("SIGTERM", 143), ("SIGINT", 130)]


@pytest.mark.parametrize("signame, code", STOP_SIGNALS)
def test_sigterm_is_handled_as_ctrl_c(base, capsys, tmp_path, signame, code):
    """train (before and after the first checkpoint), predict and export stopped by SIGTERM do what Ctrl-C
    does: the same clean-up, summary and resume hint; the exit code is 143 (128 + 15) instead of 130."""
    import signal

    from tledge.checkpoint import load_checkpoint

    b = base
    signum = getattr(signal, signame)
    project = tmp_path / "runs"
    train = ["train", b["data"], *TINY, "--project", project]
    cases = {
        "train before the first checkpoint": ("tledge.training.epochs:train_one_epoch", 1, [*train, "--epochs", "1",
                                                                                          "--name", "early"]),
        "train after the first checkpoint": ("tledge.training.epochs:train_one_epoch", 2, [*train, "--epochs", "2",
                                                                                         "--name", "late"]),
        "predict a folder": ("tledge.runtime.predict:topk_records", 2,
                             ["predict", b["onnx"], b["data"] / "red", "--warmup", "0", "--summary-json",
                              tmp_path / "summary.json"]),
        "export": ("tledge.exporting.onnx_export:export_onnx", 1,
                   ["export", b["run"], "--formats", "onnx", "--no-parity", "--out", tmp_path / "export"]),
        "predict --serve": ("tledge.runtime.predict:topk_records", 2,
                            ["predict", b["onnx"], b["data"] / "red", "--warmup", "0", "--serve", "127.0.0.1:0",
                             "--summary-json", tmp_path / "served.json"]),
        "sweep": ("tledge.training.epochs:train_one_epoch", 1,
                  ["sweep", b["data"], "--models", "mobilenet_v2", "--weights", "none", "--img-size", "32",
                   "--batch-size", "8", "--augment", "none", "--epochs", "1", "--workers", "0", "--project",
                   tmp_path / "sweeps"]),
    }
    results = {name: run_until_marked(tmp_path, target, nth, args, signum)
               for name, (target, nth, args) in cases.items()}
    for name, (got, out, err) in results.items():
        assert got == code, (name, got, err)
        assert "Traceback" not in err, (name, err)
        assert err.strip().splitlines()[-1].startswith("interrupted" + (" by SIGTERM" if code == 143 else "")), err

    # train before its first checkpoint: no folder left; the same --name trains again without --exist-ok
    _, out, err = results["train before the first checkpoint"]
    assert "warning: \ninterrupted before the first epoch" not in err  # the blank line stays above the prefix
    assert "nothing saved to resume" in err and f"removed {project / 'early'}" in out
    assert not (project / "early").exists()
    # train after it: last.pt kept, the resume command printed, and it resumes
    _, out, err = results["train after the first checkpoint"]
    assert f"Resume with: tledge train --resume {project / 'late'}" in err
    assert load_checkpoint(project / "late" / "last.pt")["epoch"] == 0
    assert not list(project.rglob("*.tmp"))
    # predict: the summary of what ran, printed and written
    _, out, _ = results["predict a folder"]
    assert "interrupted" in out.lower() or "1 item" in out
    facts = json.loads((tmp_path / "summary.json").read_text())
    assert facts["interrupted"] is True and facts["items"] == 1
    # --serve: the same summary
    served = json.loads((tmp_path / "served.json").read_text())
    assert served["interrupted"] is True and served["items"] == 1
    # sweep: the cell stopped, the results written, the resume command printed
    _, out, err = results["sweep"]
    assert f"resume with: tledge sweep --resume {tmp_path / 'sweeps' / 'sweep'}" in err
    assert (tmp_path / "sweeps" / "sweep" / "results.csv").is_file()
    # export: no output folder, no temp file left
    assert not (tmp_path / "export").exists()
    assert not list(Path(b["run"]).glob(".*.tmp"))

    code, _, err = cli(capsys, "train", b["data"], *TINY, "--epochs", "1", "--project", project, "--name", "early")
    assert code == 0, err
    code, _, err = cli(capsys, "train", "--resume", project / "late")
    assert code == 0, err
    assert json.loads((project / "late" / "metrics.json").read_text())["epochs_run"] == 2


def test_sigterm_exit_code_documented():
    from tledge.errors import EXIT_CODES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert EXIT_CODES[143].startswith("stopped by SIGTERM")
    assert "| 143 | stopped by SIGTERM (`docker stop`, systemd, `kill`): handled as Ctrl-C is" in readme


# --------------------------------------------------------------------------------------------- kind 4
def onnx_variant(src: Path, dst: Path, card: dict | None = None, nan_bias: bool = False) -> Path:
    """A copy of an exported ONNX with card fields changed, or with the classifier bias set to NaN."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from tledge.card import ONNX_METADATA_KEY

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == ONNX_METADATA_KEY and card:
            prop.value = json.dumps({**json.loads(prop.value), **card})
    if nan_bias:
        bias = next(i for i in model.graph.initializer if tuple(i.dims) == (3,))  # the classifier's (3 classes)
        bias.CopyFrom(numpy_helper.from_array(np.full(3, np.nan, np.float32), bias.name))
    onnx.save(model, str(dst))
    return dst


def test_artifacts_are_checked_when_they_load(base, capsys, tmp_path):
    """ONNX, checkpoints and engine sidecars: a card that disagrees with the graph, a malformed card field or
    non-finite first answers are one line naming the file and exit 2, in predict, bench and the API."""
    import torch

    import tledge
    from tledge.checkpoint import load_checkpoint, save_checkpoint
    from tledge.errors import TledgeError

    b = base
    image = b["image"]
    eight = [f"c{i}" for i in range(8)]
    onnx_cases = {
        "8 classes on 3 outputs": ({"class_names": eight}, {}, "names 8 classes"),
        "2 classes on 3 outputs": ({"class_names": ["red", "green"]}, {}, "names 2 classes"),
        "NaN outputs": ({}, {"nan_bias": True}, "non-finite"),
        "std with a zero": ({"std": [0.0, 0.2, 0.2]}, {}, "std"),
        "std of length 2": ({"std": [0.2, 0.2]}, {}, "std"),
        "mean of length 4": ({"mean": [0.5, 0.5, 0.5, 0.5]}, {}, "mean"),
        "mean with NaN": ({"mean": ["NaN", 0.5, 0.5]}, {}, "mean"),
        "input size 0": ({"input_size": [0, 32]}, {}, "input_size"),
        "input size of one number": ({"input_size": [32]}, {}, "input_size"),
        "input size not whole": ({"input_size": [32.5, 32]}, {}, "input_size"),
        "layout NHWC": ({"layout": "NHWC"}, {}, "layout"),
        "channel order BGR": ({"channel_order": "BGR"}, {}, "channel_order"),
        "format version 0": ({"format_version": 0}, {}, "format_version"),
        "format version text": ({"format_version": "one"}, {}, "format_version"),
        "repeated class names": ({"class_names": ["red", "red", "blue"]}, {}, "repeat"),
        "one class": ({"class_names": ["red"]}, {}, "at least 2 classes"),
    }
    cases = []
    for index, (name, (card, graph, fragment)) in enumerate(onnx_cases.items()):
        path = onnx_variant(b["onnx"], tmp_path / f"variant{index}.onnx", card, **graph)
        cases.append((name, path, fragment))

    # checkpoints: a best.pt of another run in a run folder, a malformed card, NaN weights
    state = load_checkpoint(b["run"] / "best.pt")
    foreign = tmp_path / "foreign_run"
    foreign.mkdir()
    splits = json.loads((b["run"] / "splits.json").read_text())
    (foreign / "splits.json").write_text(json.dumps({**splits, "class_names": [*splits["class_names"], "a", "b", "c"]}))
    save_checkpoint(foreign / "best.pt", state)
    cases.append(("best.pt of another run", foreign, "not this run's checkpoint"))
    save_checkpoint(tmp_path / "std0.pt", {**state, "card": {**state["card"], "std": [0.2, 0.0, 0.2]}})
    cases.append(("checkpoint std with a zero", tmp_path / "std0.pt", "std"))
    weights = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() and v.dim() == 1 and v.numel() == 3
                   else v) for k, v in state["model"].items()}
    save_checkpoint(tmp_path / "nan.pt", {**state, "model": weights})
    cases.append(("checkpoint with NaN weights", tmp_path / "nan.pt", "non-finite"))

    # engines: only the sidecar card can be checked without TensorRT
    for name, change, fragment in [("engine sidecar std 0", {"std": [0, 0, 0]}, "std"),
                                   ("engine sidecar one class", {"class_names": ["red"]}, "at least 2 classes"),
                                   ("engine sidecar layout", {"layout": "NHWC"}, "layout")]:
        engine = tmp_path / f"{name.replace(' ', '_')}.engine"
        engine.write_bytes(b"not built here")
        (tmp_path / f"{engine.name}.json").write_text(json.dumps({**state["card"], **change}))
        cases.append((name, engine, fragment))

    for name, artifact, fragment in cases:
        shown = artifact.name + (".json" if artifact.suffix == ".engine" else "")
        if artifact.is_dir():
            shown = "best.pt"
        err = assert_fails(cli(capsys, "predict", artifact, image, "--warmup", "0"), 2, fragment, shown)
        assert err.count("\n") == 1, (name, err)  # one line
        with pytest.raises(TledgeError, match=fragment):
            tledge.load(artifact).predict(str(image))
    # tledge info reads the card only: a malformed one is named with its file too
    for name, artifact, fragment in cases:
        if name.startswith(("std", "mean", "input size", "layout", "channel", "format", "repeated", "one class",
                            "engine", "checkpoint std")):
            shown = artifact.name + (".json" if artifact.suffix == ".engine" else "")
            assert_fails(cli(capsys, "info", artifact), 2, fragment, shown)
    # bench runs every row, and the checked ones fail naming the file
    bench_cases = [c for c in cases if c[0] in ("8 classes on 3 outputs", "NaN outputs", "checkpoint with NaN weights")]
    code, out, err = cli(capsys, "bench", *[c[1] for c in bench_cases], "--iters", "1", "--warmup", "0", "--batch",
                         "1", "--out", tmp_path / "bench")
    assert code == 2, err
    rows = [r for r in json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
            if r["runtime"] in ("onnxruntime", "torch")]  # each file's own runtime (OpenVINO adds rows of its own)
    assert [r["status"] == "ok" for r in rows] == [False, False, False]
    for row, (_, _, fragment) in zip(rows, bench_cases):
        assert fragment in row["status"], row
    # export refuses another run's best.pt before writing anything
    assert_fails(cli(capsys, "export", foreign, "--formats", "onnx", "--no-parity"), 2, "not this run's checkpoint")
    assert not (foreign / "export").exists()


@pytest.mark.parametrize("answer, fragment", [
    (lambda n: np.zeros((n, 2), np.float32), "expected [1, 3]"),  # a width only known once it runs
    (lambda n: np.zeros((n, 3, 1), np.float32), "expected [1, 3]"),
    (lambda n: np.full((n, 3), np.inf, np.float32), "non-finite"),
])
def test_first_answer_is_checked(base, answer, fragment):
    """Backends whose graph hides its output width (or any other backend) are checked on the first call."""
    from tledge.card import card_from_onnx
    from tledge.errors import TledgeError
    from tledge.runtime.backends.base import Backend

    class Odd(Backend):
        name = "odd"
        path = Path("odd.model")
        card = card_from_onnx(base["onnx"])

        def _predict(self, batch):
            return answer(len(batch))

    backend = Odd()
    with pytest.raises(TledgeError, match=f"odd.model: .*{re.escape(fragment)}"):
        backend.predict(np.zeros((1, 3, 32, 32), np.float32))


# --------------------------------------------------------------------------------------------- kind 5
NON_FINITE = [float("inf"), float("-inf"), float("nan")]


def float_options():
    """(job, options class, option) for every float option of every job's options object."""
    from tledge.cli.option_tables import JOBS, options_class
    from tledge.options import options_of

    found = []
    for job in JOBS:
        cls = options_class(job)
        for opt in options_of(cls):
            if opt.base_type is float:
                found.append((job, cls, opt))
    assert len(found) >= 10, [o.name for _, _, o in found]
    return found


def required_values(cls) -> dict:
    import dataclasses

    return {f.name: "x" for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


@pytest.mark.parametrize("value", NON_FINITE, ids=["inf", "-inf", "nan"])
def test_every_float_option_rejects_non_finite_values(value):
    """Each float option of each options object (train, eval, export, predict, bench, sweep, demo...)."""
    from tledge.errors import TledgeError

    checked = []
    for job, cls, opt in float_options():
        with pytest.raises(TledgeError, match=re.escape(opt.flag) + ".*finite"):
            cls(**{**required_values(cls), opt.name: value})
        checked.append(f"{job}:{opt.flag}")
    assert {"train:--lr", "train:--weight-decay", "train:--momentum", "train:--dropout", "train:--gamma",
            "export:--calib-percentile", "export:--int8-budget", "export:--qat-lr", "bench:--min-time"} <= set(checked)


def test_non_finite_numbers_on_the_command_line_and_the_api(base, capsys, tmp_path):
    import tledge
    from tledge.errors import TledgeError

    b = base
    project = tmp_path / "p"
    cases = [
        (["train", b["data"], *TINY, "--lr", "inf", "--project", project], "--lr"),
        (["train", b["data"], *TINY, "--lr", "nan", "--project", project], "--lr"),
        (["train", b["data"], *TINY, "--weight-decay", "inf", "--project", project], "--weight-decay"),
        (["train", b["data"], *TINY, "--momentum", "-inf", "--project", project], "--momentum"),
        (["train", b["data"], *TINY, "--width-mult", "nan", "--project", project], "--width-mult"),
        (["train", b["data"], *TINY, "--split", "0.8,nan,0.2", "--project", project], "split"),
        (["sweep", b["data"], "--models", "mobilenet_v2", "--lr", "1e-3,inf", "--epochs", "1", "--project", project],
         "--lr"),
        (["export", b["run"], "--formats", "onnx", "--tolerance", "onnx=inf", "--out", tmp_path / "e"], "--tolerance"),
        (["export", b["run"], "--formats", "onnx", "--tolerance", "onnx=nan", "--out", tmp_path / "e"], "--tolerance"),
        (["export", b["run"], "--formats", "int8", "--int8-budget", "inf", "--out", tmp_path / "e"], "--int8-budget"),
        (["export", b["run"], "--formats", "int8", "--calib-method", "percentile", "--calib-percentile", "nan",
          "--out", tmp_path / "e"], "--calib-percentile"),
        (["bench", b["onnx"], "--min-time", "inf", "--out", tmp_path / "b"], "--min-time"),
    ]
    for args, flag in cases:
        assert_fails(cli(capsys, *args), 2, flag)
    api_cases = [
        (lambda: tledge.train(b["data"], lr=float("inf"), project=str(project)), "--lr"),
        (lambda: tledge.export(b["run"], formats=["int8"], int8_budget=float("nan"), out=str(tmp_path / "e")),
         "--int8-budget"),
        (lambda: tledge.bench(b["onnx"], min_time=float("inf")), "--min-time"),
    ]
    for call, flag in api_cases:
        with pytest.raises(TledgeError, match=re.escape(flag)):
            call()
    assert tree(tmp_path) == set()  # refused before any folder


def test_threads_bounded_by_the_cores(base, capsys, tmp_path):
    import torch

    from tledge.runtime.backends import load_backend
    from tledge.runtime.backends.base import usable_cores

    cores = usable_cores()
    warning = f"warning: --threads 10000 is more than the {cores} core(s) this process may use; using {cores}"
    onnx = load_backend(base["onnx"], "cpu", threads=10000)
    assert onnx.notes == [warning]
    assert onnx.session.get_session_options().intra_op_num_threads == cores
    assert load_backend(base["onnx"], "cpu", threads=cores).notes == []
    before = torch.get_num_threads()
    try:
        pt = load_backend(base["run"], "cpu", threads=10000)
        assert pt.notes == [warning] and torch.get_num_threads() == cores
    finally:
        torch.set_num_threads(before)
    code, out, err = cli(capsys, "predict", base["onnx"], base["image"], "--threads", "10000", "--warmup", "0")
    assert code == 0 and warning in out + err
    code, out, err = cli(capsys, "bench", base["onnx"], "--threads", "10000", "--iters", "1", "--warmup", "0",
                         "--batch", "1", "--out", tmp_path / "b")
    assert code == 0 and warning.replace("warning: ", "warning: model.onnx: ") in err  # bench names the file


def test_warm_up_and_batch_bounded_by_the_data(base, capsys, tmp_path):
    """--batch far beyond the data: the warm-up and the batches hold at most as many items as there are."""
    from tledge.runtime.backends import onnxrt

    shapes = []
    real = onnxrt.OnnxRuntimeBackend._predict

    def spy(self, batch):
        shapes.append(batch.shape[0])
        return real(self, batch)

    onnxrt.OnnxRuntimeBackend._predict = spy
    try:
        cases = [  # (source, extra options, largest batch seen incl. warm-up, summary batch)
            (base["image"], ["--batch", "100000"], 1),
            (base["data"] / "red", ["--batch", "100000"], 8),
            (base["data"] / "red", ["--batch", "3"], 3),
            (base["data"] / "red", ["--batch", "100000", "--max-frames", "2"], 2),
        ]
        for source, extra, expected in cases:
            shapes.clear()
            summary = tmp_path / "s.json"
            code, _, err = cli(capsys, "predict", base["onnx"], source, "--warmup", "2", *extra, "--summary-json",
                               summary)
            assert code == 0, err
            assert max(shapes) == expected and shapes[:2] == [expected, expected], (extra, shapes)
            assert json.loads(summary.read_text())["batch"] == expected
    finally:
        onnxrt.OnnxRuntimeBackend._predict = real


# --------------------------------------------------------------------------------------------- kind 7
def test_python_api_raises_tledge_errors(base, tmp_path):
    """Bad input to every public function is a TledgeError (never cv2.error, TypeError, IndexError,
    AttributeError), with a message that says what was given."""
    import tledge
    from tledge.errors import TledgeError

    b = base
    model = tledge.load(b["onnx"])
    closed = tledge.load(b["onnx"])
    closed.close()
    closed.close()  # twice is harmless
    cases = [
        # load
        (lambda: tledge.load(None), "got None"),
        (lambda: tledge.load(123), "got a int"),
        (lambda: tledge.load(b"model.onnx"), "bytes"),
        (lambda: tledge.load(""), "empty string"),
        (lambda: tledge.load(tmp_path / "missing.onnx"), "no such file"),
        (lambda: tledge.load(b["onnx"], topk="5"), "topk '5'"),
        (lambda: tledge.load(b["onnx"], topk=0), "topk 0"),
        (lambda: tledge.load(b["onnx"], batch=1.5), "batch 1.5"),
        # predict
        (lambda: model.predict(None), "got None"),
        (lambda: model.predict(5), "got a int"),
        (lambda: model.predict(b"\x89PNG"), "bytes"),
        (lambda: model.predict(np.array([])), "HxWx3 uint8"),
        (lambda: model.predict(np.zeros((0, 0, 3), np.uint8)), "at least one pixel"),
        (lambda: model.predict(np.zeros((0, 10, 3), np.uint8)), "at least one pixel"),
        (lambda: model.predict(np.zeros((8, 8), np.uint8)), "HxWx3 uint8"),
        (lambda: model.predict(np.zeros((8, 8, 3), np.float32)), "HxWx3 uint8"),
        (lambda: model.predict([None]), "item 0 is None"),
        (lambda: model.predict([str(b["image"]), None]), "item 1 is None"),
        (lambda: model.predict([b["image"].read_bytes()]), "item 0 is"),
        (lambda: model.predict([3.5]), "item 0 is a float"),
        (lambda: model.predict(tmp_path / "missing.png"), "no such image"),
        # a closed model
        (lambda: closed.predict(str(b["image"])), "was closed"),
        (lambda: list(closed.stream(str(b["data"] / "red"))), "was closed"),
        # stream
        (lambda: list(model.stream(np.zeros((8, 8, 3), np.uint8))), "use predict()"),
        (lambda: list(model.stream(None)), "got None"),
        (lambda: list(model.stream(b"0")), "bytes"),
        # the other doors
        (lambda: tledge.export(None), "export() needs"),
        (lambda: tledge.bench(None), "bench() needs"),
        (lambda: tledge.bench([b["onnx"], None]), "bench() needs"),
        (lambda: tledge.evaluate(None), "must be given"),
        (lambda: tledge.train(None), "needs DATA"),
    ]
    try:
        for call, fragment in cases:
            with pytest.raises(TledgeError) as caught:
                call()
            assert type(caught.value).__module__.startswith("tledge"), caught.value
            assert fragment in str(caught.value), (fragment, str(caught.value))
            assert "\n" not in str(caught.value)
    finally:
        model.close()


def test_python_api_accepts_pil_images(base):
    """A PIL image (RGB, RGBA, grayscale, palette) gives the answer its RGB pixels give as an array."""
    from PIL import Image

    import tledge
    from tledge.preprocess import load_image

    rgb = load_image(base["image"])
    pil = Image.fromarray(rgb)
    with tledge.load(base["onnx"]) as model:
        reference = model.predict(rgb)[0]
        assert reference.label in ("red", "green", "blue")
        for image in (pil, pil.convert("RGBA"), [pil, pil]):
            got = model.predict(image)
            assert [p.label for p in got] == [reference.label] * len(got)
        assert model.predict(pil)[0].score == pytest.approx(reference.score, abs=1e-6)
        for lossy in (pil.convert("L"), pil.convert("P")):  # other pixels: any label, but an answer
            answer = model.predict(lossy)[0]
            assert answer.label in ("red", "green", "blue") and 0 < answer.score <= 1


# --------------------------------------------------------------------------------------------- kind 6
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs inside tmp_path (a real full disk: ENOSPC from the kernel); skipped where mounting is not
    allowed (not root)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill `disk` until about `leave` bytes are free."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as handle:
        try:
            handle.write(b"\0" * max(0, free - leave))
            handle.flush()
        except OSError:
            pass


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


NO_SPACE = "No space left on device"


def check_write_failures(capsys, cases, disk: Path | None, run: Path) -> None:
    for args, leave, fragments in cases:
        if leave is not None:
            fill(disk, leave)
        code, out, err = cli(capsys, *args)
        assert_fails((code, out, err), 2, *fragments)
        assert (disk is None or leftovers(disk) == []) and leftovers(run) == [], args
        assert "next:" not in out  # export names no artifact that was not written


def test_a_full_disk_is_one_line(base, capsys, small_disk):
    """ENOSPC from a real full tmpfs: one line, exit 2, naming the file and what was kept; no temp file left."""
    b, disk = base, small_disk
    (disk / "s.json").write_text('{"previous": true}\n')
    P = ["predict", b["onnx"]]
    cases = [  # (args, bytes left free, fragments)
        (["eval", b["run"], "--json", disk / "m.json"], 0, [NO_SPACE, "m.json was not written"]),
        ([*P, b["image"], "--warmup", "0", "--summary-json", disk / "s.json"], 0,
         [NO_SPACE, "previous s.json is kept unchanged"]),
        ([*P, b["data"] / "red", "--warmup", "0", "--json", disk / "p.jsonl"], 0, [NO_SPACE, "line(s)"]),
        ([*P, b["data"] / "red", "--warmup", "0", "--csv", disk / "p.csv"], 0, [NO_SPACE, "p.csv"]),
        (["export", b["run"], "--formats", "onnx", "--no-parity", "--out", disk / "e"], 0, [NO_SPACE]),
        (["bench", b["onnx"], "--iters", "1", "--warmup", "0", "--batch", "1", "--out", disk / "b"], 0,
         [NO_SPACE, "bench.json was not written"]),
        (["train", b["data"], *TINY, "--epochs", "1", "--project", disk / "runs", "--name", "r"], 200_000,
         [NO_SPACE, "best.pt"]),
    ]
    check_write_failures(capsys, cases, disk, b["run"])
    assert (disk / "s.json").read_text() == '{"previous": true}\n'
    assert not (disk / "e").exists() and not (disk / "runs" / "r").exists()
    assert not (disk / "b" / "bench.json").exists()


def test_a_device_that_refuses_writes_is_one_line(base, capsys, tmp_path):
    """ENOSPC from a node with /dev/full's numbers (written through, never replaced)."""
    b = base
    full = make_node(tmp_path, "full device")
    P = ["predict", b["onnx"], b["image"], "--warmup", "0"]
    cases = [
        ([*P, "--json", full], None, [NO_SPACE, str(full)]),
        ([*P, "--summary-json", full], None, [NO_SPACE, str(full)]),
        (["eval", b["run"], "--json", full], None, [NO_SPACE, str(full)]),
    ]
    check_write_failures(capsys, cases, None, b["run"])
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_an_io_error_during_training_keeps_the_last_checkpoint(base, capsys, tmp_path, monkeypatch):
    """EIO injected at the fsync of the second last.pt: last.pt keeps epoch 1, the message says so, and
    --resume goes on once the disk is fixed."""
    import tledge.atomic as atomic

    b = base
    real_fsync, writes = os.fsync, {"last": 0}

    def failing_fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".last.pt."):
            writes["last"] += 1
            if writes["last"] == 2:
                raise OSError(5, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    project = tmp_path / "runs"
    code, out, err = cli(capsys, "train", b["data"], *TINY, "--epochs", "2", "--project", project, "--name", "eio")
    assert_fails((code, out, err), 2, "Input/output error", "previous last.pt is kept unchanged")
    assert f"{project / 'eio' / 'last.pt'} holds epoch 1; once the disk is fixed, resume with" in err
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert leftovers(project) == []
    code, _, err = cli(capsys, "train", "--resume", project / "eio")
    assert code == 0, err
    assert json.loads((project / "eio" / "metrics.json").read_text())["epochs_run"] == 2


def test_names_too_long_are_found_before_work(base, capsys, tmp_path):
    b = base
    long = "n" * 300
    out = tmp_path / "out"
    cases = [
        (["predict", b["onnx"], b["image"], "--json", out / f"{long}.jsonl"], "--json"),
        (["predict", b["onnx"], b["image"], "--csv", out / f"{long}.csv"], "--csv"),
        (["predict", b["onnx"], b["image"], "--summary-json", out / long / "s.json"], "--summary-json"),
        (["predict", b["onnx"], b["data"], "--save", out / long], "--save"),
        (["eval", b["run"], "--json", out / f"{long}.json"], "--json"),
        (["export", b["run"], "--formats", "onnx", "--out", out / long], "--out"),
        (["bench", b["onnx"], "--out", out / long, "--iters", "1"], "--out"),
        (["train", b["data"], *TINY, "--project", out / long], "--project"),
    ]
    for args, option in cases:
        assert_fails(cli(capsys, *args), 2, option, "bytes and this file system allows", "choose a shorter name")
    assert tree(tmp_path) == set()
    # a name near the limit (250 bytes) is written: the temp file's name is cut to fit
    near = out / ("s" * 245 + ".json")
    code, _, err = cli(capsys, "predict", b["onnx"], b["image"], "--warmup", "0", "--summary-json", near)
    assert code == 0, err
    assert json.loads(near.read_text())["items"] == 1 and leftovers(out) == []


# --------------------------------------------------------------------------------------------- kind 8
def exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 64x256 JPEG, bright on its left 32 columns as stored, tagged EXIF orientation 6 (a phone held
    upright: viewers turn it 90°). Returns the stored pixels' layout as RGB."""
    from PIL import Image

    stored = np.zeros((64, 256, 3), np.uint8)
    stored[:, :32] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[274] = 6
    image.save(path, "JPEG", exif=exif.tobytes())
    return stored


@pytest.mark.parametrize("path_name", ["full decode", "reduced 1/2", "reduced 1/4", "reduced 1/8",
                                       "load_image --fast-decode", "Pillow fallback"])
def test_one_orientation_rule_for_every_decode_path(tmp_path, path_name):
    """EXIF orientation is ignored by every decode path, as training's decode does: --fast-decode no longer
    turns a phone photo 90° that training saw upright as stored."""
    from tledge.preprocess import _decode_with_pillow, decode_image, load_image

    decoders = {
        "full decode": lambda path: decode_image(path.read_bytes()),
        "reduced 1/2": lambda path: decode_image(path.read_bytes(), (32, 32)),
        "reduced 1/4": lambda path: decode_image(path.read_bytes(), (16, 16)),
        "reduced 1/8": lambda path: decode_image(path.read_bytes(), (8, 8)),
        "load_image --fast-decode": lambda path: load_image(path, (8, 8)),
        "Pillow fallback": _decode_with_pillow,
    }
    path = tmp_path / "phone.jpg"
    exif_rotated_jpeg(path)
    image = decoders[path_name](path)
    height, width = image.shape[:2]
    assert width == 4 * height, (path_name, image.shape)  # stored layout (wide), not turned (tall)
    assert image[:, : width // 16].mean() > 200 and image[:, width // 2:].mean() < 30  # bright stripe on the left


def test_fast_decode_predicts_the_stored_orientation(base, capsys, tmp_path):
    path = tmp_path / "phone.jpg"
    exif_rotated_jpeg(path)
    answers = []
    for extra in ([], ["--fast-decode"]):
        summary = tmp_path / "s.jsonl"
        code, _, err = cli(capsys, "predict", base["onnx"], path, "--warmup", "0", "--json", summary, *extra)
        assert code == 0, err
        answers.append(json.loads(summary.read_text()))
    assert answers[0]["label"] == answers[1]["label"]
    assert answers[0]["prob"] == pytest.approx(answers[1]["prob"], abs=0.05)


def test_resuming_a_finished_run_touches_nothing(base, capsys, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(base["run"], run)
    before = contents(run)
    code, out, err = cli(capsys, "train", "--resume", run)
    assert code == 0, err
    assert f"{run} finished already (1 epochs; see metrics.json): nothing to resume, its files are unchanged" in out
    assert contents(run) == before  # best.pt unchanged: its export is not made stale
    code, out, err = cli(capsys, "predict", run / "export" / "model.onnx", base["image"], "--warmup", "0")
    assert code == 0 and "exported from another checkpoint" not in out + err


@pytest.mark.parametrize("emptied, warned", [
    ({"val": ["blue"]}, ["class(es) 'blue' have no val images"]),
    ({"test": ["blue"]}, ["class(es) 'blue' have no test images"]),
    ({"test": ["blue", "green"]}, ["class(es) 'blue', 'green' have no test images"]),
    ({"val": ["red"], "test": ["red"]}, ["class(es) 'red' have no val images", "class(es) 'red' have no test images"]),
    ({}, []),
])
def test_a_class_missing_from_val_or_test_is_warned(make_image_folder, emptied, warned):
    import shutil

    from tledge.datasets.folders import build_splits

    root = make_image_folder(classes=("red", "green", "blue"), splits={"train": 4, "val": 2, "test": 2})
    for split, classes in emptied.items():
        for name in classes:
            shutil.rmtree(root / split / name)
            (root / split / name).mkdir()
    _, report = build_splits(root, (0.8, 0.1, 0.1), 0)
    got = [w for w in report.warnings if "have no" in w]
    assert [w.split(":")[0] for w in got] == warned
    assert all("left out of macro averages" in w for w in got)


@pytest.mark.parametrize("y_true, y_pred, macro_f1, unmeasured", [
    ([0, 0, 1, 1], [0, 0, 1, 1], 1.0, ["c"]),            # c has no images and is never predicted: not a 0
    ([0, 0, 1], [0, 2, 1], (2 / 3 + 1 + 0) / 3, []),       # c predicted without images: its 0 counts (sklearn)
    ([0, 1, 2], [0, 1, 2], 1.0, []),
    ([], [], 0.0, []),
])
def test_macro_averages_count_only_classes_that_occur(y_true, y_pred, macro_f1, unmeasured):
    from tledge.metrics import classification_report

    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert report["macro"]["f1"] == pytest.approx(macro_f1)
    assert report["unmeasured"] == unmeasured


def test_a_missing_provider_is_what_the_reference_says():
    from tledge.errors import TledgeError
    from tledge.runtime.backends import onnxrt

    reference = " ".join((Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text().split())
    assert "one this onnxruntime does not have at all is exit 2 with the install fix" in reference
    with pytest.raises(TledgeError, match="'tensorrt' is not available here"):
        onnxrt.choose_providers(["CPUExecutionProvider"], provider="tensorrt")


# --------------------------------------------------------------------------------------------- kind 9
def test_messages_name_the_option_the_value_and_the_fix(base, capsys, tmp_path, monkeypatch):
    import shutil

    b = base
    import cv2

    photo = tmp_path / "photo.jpg"
    shutil.copy(b["image"], tmp_path / "photo.png")
    cv2.imwrite(str(photo), cv2.imread(str(b["image"])))
    # a run whose data folder was moved away after training
    data, moved = tmp_path / "data", tmp_path / "moved"
    shutil.copytree(b["data"], data)
    run = tmp_path / "run"
    shutil.copytree(b["run"], run, ignore=shutil.ignore_patterns("export"))
    splits = json.loads((run / "splits.json").read_text())
    (run / "splits.json").write_text(json.dumps({**splits, "root": str(data)}))
    data.rename(moved)
    torch_home = tmp_path / "torch_home"
    torch_home.write_text("a file where a folder goes\n")
    project = tmp_path / "p"
    cases = [
        (["export", b["onnx"], "--out", tmp_path / "e"], {}, ["is an ONNX model", "run folder or its best.pt"]),
        (["eval", photo], {}, [str(photo), "is a JPEG image"]),
        (["export", tmp_path / "photo.png", "--out", tmp_path / "e"], {}, ["is a PNG image"]),
        (["train", b["data"], *TINY, "--epochs", "1", "--weights", photo, "--project", project], {},
         ["--weights", str(photo), "is a JPEG image", "imagenet, none"]),
        (["train", b["data"], *TINY, "--epochs", "1", "--weights", b["onnx"], "--project", project], {},
         ["--weights", "is an ONNX model"]),
        (["export", run, "--formats", "onnx", "--out", tmp_path / "e"], {},
         [str(data), "which is gone", "--parity-data"]),
        (["eval", run], {}, [str(data), "which is gone", "tledge eval RUN DATA"]),
        (["bench", run / "best.pt", "--iters", "1", "--out", tmp_path / "b"], {}, []),  # a bare .pt: no split used
        (["bench", run, "--iters", "1", "--warmup", "0", "--batch", "1", "--out", tmp_path / "b2"], {},
         ["which is gone", "--data DIR"]),
        (["train", b["data"], "--model", "mobilenet_v2", "--weights", "imagenet", "--img-size", "32", "--epochs", "1",
          "--workers", "0", "--project", project], {"TORCH_HOME": str(torch_home)},
         [f"TORCH_HOME={torch_home}", "is a file, not a folder"]),
    ]
    for args, env, fragments in cases:
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            result = cli(capsys, *args)
        if not fragments:
            assert result[0] == 0, result
            continue
        err = assert_fails(result, 2, *fragments)
        assert err.count("\n") == 1 and "weights_only" not in err and "offline" not in err, err
    assert not project.exists() and not (tmp_path / "e").exists()


def test_a_finite_http_video_ends(tmp_path):
    """A video file served over HTTP plays once and ends (it was reopened and replayed forever as if it were
    a live stream that dropped)."""
    import functools
    import http.server
    import itertools
    import socketserver

    import cv2

    from tledge.runtime.sources import open_source

    folder = tmp_path / "www"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
        with open_source(url) as source:
            frames = list(itertools.islice(source, 30))
        assert source.kind == "video"
        assert len(frames) == 6
    finally:
        server.shutdown()
        server.server_close()


def test_serve_waits_instead_of_spinning_when_out_of_file_descriptors(monkeypatch, log_lines):
    """accept() failing with EMFILE (idle viewers under `ulimit -n 64`) pauses the accept loop each time and
    warns once; other accept errors are dropped as before, without a pause."""
    import errno as errnos

    from tledge.runtime import serve

    class FailingSocket:
        def __init__(self, code):
            self.code = code

        def accept(self):
            raise OSError(self.code, os.strerror(self.code))

    pauses = []
    monkeypatch.setattr(serve.time, "sleep", pauses.append)
    server = serve._LiveHTTPServer.__new__(serve._LiveHTTPServer)
    server.connections = {object(), object()}
    for code, expected_pauses in ((errnos.EMFILE, 3), (errnos.ENFILE, 3), (errnos.ECONNABORTED, 0)):
        pauses.clear()
        server.socket = FailingSocket(code)
        for _ in range(3):
            server._handle_request_noblock()  # what serve_forever calls when the listening socket is readable
        assert pauses == [serve._LiveHTTPServer.out_of_files_pause] * expected_pauses, code
    assert [line for line in log_lines if "out of file descriptors" in line] == [
        "warning: serve: out of file descriptors (2 connections open; raise `ulimit -n`): new viewers wait"]


def test_batches_bounded_by_memory(base, capsys, tmp_path, monkeypatch):
    """A batch whose input alone would not fit is refused before anything is allocated (bench: that row
    fails, the others run; predict on a video: exit 2); files bound the batch first, so it may fit."""
    import cv2

    from tledge.runtime.backends import base as backend_base

    monkeypatch.setattr(backend_base, "available_memory", lambda: 8_000_000)  # 8 MB: 4 MB for an input
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(3):
        writer.write(np.full((32, 32, 3), 60 * i, np.uint8))
    writer.release()
    assert_fails(cli(capsys, "predict", base["onnx"], clip, "--batch", "1000"), 2, "--batch 1000", "use a smaller")
    code, _, err = cli(capsys, "predict", base["onnx"], base["data"] / "red", "--batch", "1000", "--warmup", "1")
    assert code == 0, err  # 8 files: a batch of 8
    code, out, err = cli(capsys, "bench", base["onnx"], "--batch", "1,1000", "--iters", "1", "--warmup", "0",
                         "--out", tmp_path / "b")
    assert code == 2
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert {(r["batch"], r["status"] == "ok") for r in rows} == {(1, True), (1000, False)}  # on every runtime
    assert rows[1]["status"].startswith("failed: --batch 1000: its input alone needs 0.0 GB (1000 x 3 x 32 x 32")
