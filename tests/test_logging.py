"""Logging instead of print: the library logs under `tledge` and configures nothing; the CLI's -q / -v choose
what is shown (`tledge -q predict FOLDER` prints the summary only)."""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_runtime_helpers import artifacts  # noqa: F401
from tledge.runtime.predict import format_summary

REPO = Path(__file__).resolve().parents[1]


def _predict(artifacts, tmp_path, *flags):
    summary = tmp_path / f"summary{len(flags)}{''.join(flags)}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tledge", *flags, "predict", str(artifacts["onnx"]),
                           str(artifacts["images"]), "--warmup", "0", "--summary-json", str(summary)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(summary.read_text())


def test_quiet_folder_predict_prints_only_the_summary(artifacts, tmp_path):
    proc, summary = _predict(artifacts, tmp_path, "-q")
    assert summary["items"] == len(artifacts["paths"]) == 12
    assert proc.stdout == format_summary(summary) + "\n"
    assert not any(p.name in proc.stdout + proc.stderr for p in artifacts["paths"])


def test_default_shows_each_image_and_verbose_the_details(artifacts, tmp_path):
    proc, summary = _predict(artifacts, tmp_path)
    assert all(p.name in proc.stdout for p in artifacts["paths"])  # one line per image, then the summary
    assert proc.stdout.endswith(format_summary(summary) + "\n")
    assert "decode worker(s)" not in proc.stdout
    verbose, _ = _predict(artifacts, tmp_path, "-v")
    assert f"on onnxruntime-cpu-fp32, images source {artifacts['images']} (12 items), batch 1" in verbose.stdout
    assert all(p.name in verbose.stdout for p in artifacts["paths"])


def test_quiet_and_verbose_together_is_a_one_line_error(capsys):
    from tledge.cli import main

    assert main(["-q", "-v", "info", "x.onnx"]) == 2
    assert capsys.readouterr().err == "error: -q/--quiet and -v/--verbose contradict each other; give one\n"


def test_library_logs_under_tledge_and_configures_nothing(artifacts, caplog):
    """A Python caller's own logging config decides: the records reach caplog's root handler, named by module."""
    from tledge.runtime.options import PredictRequest
    from tledge.runtime.runner import run_predict

    assert [type(h) for h in logging.getLogger("tledge").handlers] == [logging.NullHandler]
    assert logging.getLogger("tledge").level == logging.NOTSET
    with caplog.at_level(logging.DEBUG, logger="tledge"):
        summary = run_predict(PredictRequest(str(artifacts["onnx"]), str(artifacts["images"]), warmup=0))
    records = [r for r in caplog.records if r.name == "tledge.runtime.runner"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.INFO, logging.INFO]
    assert records[-1].getMessage() == format_summary(summary)
    assert all(p.name in records[1].getMessage() for p in artifacts["paths"])


def test_progress_bars_follow_the_tledge_level():
    from tledge.logs import LEVELS, cli_logging, progress_shown

    assert not progress_shown()  # unconfigured: WARNING from the root, no bars
    with cli_logging(LEVELS["normal"]):
        assert progress_shown()
    with cli_logging(LEVELS["quiet"]):
        assert not progress_shown()
    assert not progress_shown()  # the CLI's level and handler are gone again


CLI_PACKAGE = REPO / "tledge" / "cli"  # the click modules print the commands' own results


def test_no_print_in_the_library():
    """Every message of the library goes through logging; only the CLI modules print (click.echo)."""
    offenders = []
    for path in sorted((REPO / "tledge").rglob("*.py")):
        if path.is_relative_to(CLI_PACKAGE):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Name) and node.id == "print":  # a call, or print passed on as a callback
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_quantizer_noise_is_dropped_and_the_callers_logging_kept(caplog):
    """ORT's quantizer logs on the root logger (logging.info) and may run logging.basicConfig: hidden for the
    call, while the caller's root level and handlers stay as they were and tledge's records still arrive."""
    from tledge.exporting.int8 import _quiet

    root = logging.getLogger()
    caplog.set_level(logging.INFO)
    level, handlers = root.level, list(root.handlers)
    with _quiet():
        logging.info("Collecting tensor data")  # what onnxruntime.quantization does
        logging.getLogger("onnxruntime.quantization.base").warning("per-channel")
        logging.getLogger("tledge.exporting.int8").info("ours")
        root.addHandler(logging.StreamHandler())  # as logging.basicConfig would on an unconfigured root
    assert root.level == level and root.handlers == handlers and root.filters == []
    assert [r.getMessage() for r in caplog.records] == ["ours"]
    logging.info("after")
    assert caplog.records[-1].getMessage() == "after"


def test_captured_keeps_a_blocks_lines_for_a_script():
    from tledge.logs import captured

    seen = []
    with captured(on_line=seen.append) as lines:
        logging.getLogger("tledge.exporting.pipeline").info("exporting")
        logging.getLogger("tledge.exporting.pipeline").debug("a detail")
        logging.getLogger("elsewhere").warning("not ours")
    assert lines == seen == ["exporting"]
    assert logging.getLogger("tledge").level == logging.NOTSET and logging.getLogger("tledge").handlers[1:] == []
