"""Export as steps: a failing format is a failed row, the steps that need it are skipped, the others run and
are parity-checked, and the exit code is the worst outcome (1 crash > 2 user-fixable > 3 parity > 0)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import tledge
from test_export import tiny_run  # noqa: F401 - the module-scoped tiny trained run
from tledge.cli import main
from tledge.errors import TledgeError
from tledge.exporting import int8 as int8_mod
from tledge.exporting.formats import ExportFormat
from tledge.exporting.pipeline import ExportResult, Step, run_steps


def _fail_flavour(monkeypatch, flavour: str, error: Exception) -> None:
    real = int8_mod.quantize_int8

    def quantize(source, path, *args, flavour="u8s8", **kwargs):
        if flavour == failing:
            raise error
        return real(source, path, *args, flavour=flavour, **kwargs)

    failing = flavour
    monkeypatch.setattr(int8_mod, "quantize_int8", quantize)


def test_a_crashing_step_is_a_row_and_the_others_go_on(tiny_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    _fail_flavour(monkeypatch, "u8s8", RuntimeError("boom"))
    out = tmp_path / "out"
    code = main(["export", str(tiny_run), "--formats", "onnx,int8", "--int8-flavours", "both", "--calib-images", "32",
                 "--tolerance", "int8=100", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1  # a crash is the worst outcome
    assert captured.err.strip() == "error: export step failed: int8: failed: RuntimeError: boom"
    assert (out / "model.onnx").is_file() and (out / "model.int8.trt.onnx").is_file()
    assert not (out / "model.int8.onnx").exists()
    report = json.loads((out / "parity.json").read_text())
    assert report["failed"] == [{"format": "int8", "status": "failed: RuntimeError: boom"}]
    assert len(report["results"]) == 2  # onnx and int8-trt were still checked
    assert "failed: RuntimeError: boom" in captured.out  # the table row


def test_api_returns_the_result_and_names_the_failure(tiny_run, tmp_path, monkeypatch, log_lines):  # noqa: F811
    _fail_flavour(monkeypatch, "u8s8", TledgeError("calibration images vanished"))
    lines = log_lines
    exp = tledge.export(tiny_run, formats=["onnx", "int8"], calib_images=32, tolerance="int8=100",
                        out=tmp_path / "o")
    assert exp["onnx"] == tmp_path / "o" / "model.onnx"
    with pytest.raises(KeyError, match="calibration images vanished"):
        exp["int8"]
    assert "int8" not in exp and "onnx" in exp
    assert exp.exit_code == 2 and [r["format"] for r in exp.parity] == ["onnx"]
    assert lines[-1].startswith("warning: calibration images vanished")
    with pytest.raises(TledgeError, match="calibration images vanished"):
        tledge.export(tiny_run, formats=["onnx", "int8"], calib_images=32, out=tmp_path / "p", strict=True)


def test_a_failed_step_outranks_a_parity_failure(tiny_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    _fail_flavour(monkeypatch, "s8s8", TledgeError("no room"))
    code = main(["export", str(tiny_run), "--formats", "onnx,int8", "--int8-flavours", "both", "--calib-images", "32",
                 "--tolerance", "int8.agreement=100.5", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no room" in err  # not 3: the int8 parity failure is the lesser outcome


def _step(name, needs=(), fail=None, seen=None):
    def build(ctx, inputs, target):
        if seen is not None:
            seen[name] = dict(inputs)
        if fail is not None:
            raise fail
        target.write_bytes(b"x" * 10)
        return target

    return Step(ExportFormat(name, f"{name}.onnx", build, needs=tuple(needs)), name, True)


def test_steps_that_need_a_failed_step_are_skipped(tmp_path):
    ctx = SimpleNamespace(out=tmp_path, options=None, card=None)
    seen = {}
    steps = [_step("a", seen=seen), _step("b", ["a"], fail=TledgeError("bad b")), _step("c", ["b"], seen=seen),
             _step("d", ["a"], seen=seen), _step("e", ["d"], fail=ValueError("bug in e"))]
    result = ExportResult(tmp_path)
    outputs = run_steps(ctx, steps, result)
    # each step is given exactly the outputs of the steps it needs, and returns its own
    assert seen == {"a": {}, "d": {"a": tmp_path / "a.onnx"}}
    assert outputs == {"a": tmp_path / "a.onnx", "d": tmp_path / "d.onnx"}
    status = {r.format: r.status for r in result.rows}
    assert status == {"a": "ok (no parity)", "b": "failed: bad b", "c": "skipped: b failed", "d": "ok (no parity)",
                      "e": "failed: ValueError: bug in e"}
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["a.onnx", "d.onnx"]
    assert {r.format: r.exit_code for r in result.rows}["b"] == 2 and result.rows[-1].exit_code == 1


def test_an_export_that_wrote_nothing_leaves_no_folder(tiny_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Every step failed (the ONNX step that all others need crashed): no empty output folder is left."""
    import tledge.exporting.onnx_export as onnx_export

    def crash(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_export, "export_onnx", crash)
    out = tmp_path / "new" / "out"
    code = main(["export", str(tiny_run), "--formats", "onnx,int8", "--out", str(out)])
    assert code == 1 and "exporter exploded" in capsys.readouterr().err
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["export", str(tiny_run), "--formats", "onnx", "--out", str(existing)]) == 1
    assert existing.is_dir()  # a folder the user already had is never removed
