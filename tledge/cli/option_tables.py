"""The option tables of docs/reference.md, generated from the options objects (one per job), between the
markers `<!-- options:JOB -->` and `<!-- /options:JOB -->`. `python scripts/readme_options.py` rewrites them;
tests/test_options.py fails when docs/reference.md and the options objects disagree (or a table is missing)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from tledge.options import markdown_table

# The file that holds the tables, relative to the repository root (README.md links to it).
REFERENCE = Path("docs") / "reference.md"

JOBS = {
    "train": "tledge.training.config:TrainConfig",
    "resume": "tledge.training.config:ResumeOptions",
    "eval": "tledge.training.eval_options:EvalOptions",
    "demo": "tledge.demo:DemoOptions",
    "export": "tledge.exporting.options:ExportOptions",
    "predict": "tledge.runtime.options:PredictRequest",
    "bench": "tledge.runtime.options:BenchOptions",
    "info": "tledge.runtime.options:InfoOptions",
    "verify": "tledge.verification.verify:VerifyOptions",
    "sweep": "tledge.training.sweep_options:SweepOptions",
}


def options_class(job: str) -> type:
    module, name = JOBS[job].split(":")
    return getattr(importlib.import_module(module), name)


def render(job: str) -> str:
    return markdown_table(options_class(job))


def _block(job: str) -> re.Pattern:
    return re.compile(rf"(<!-- options:{job} -->\n)(.*?)(<!-- /options:{job} -->)", re.S)


def update_tables(text: str) -> str:
    """The reference text with every marked table regenerated."""
    for job in JOBS:
        text = _block(job).sub(lambda m, job=job: m.group(1) + render(job) + "\n" + m.group(3), text)
    return text


def document_table(text: str, job: str) -> str | None:
    """The table the reference text holds for `job`, or None when the markers are missing."""
    match = _block(job).search(text)
    return match.group(2).rstrip("\n") if match else None
