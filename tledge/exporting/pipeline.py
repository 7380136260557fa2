"""`tledge export`: checkpoint → the steps the requested formats need → parity check → table, parity.json,
next commands.

prepare() finds every mistake before any work starts (tledge.exporting.prepare). Then the steps run in the
order of the format table (tledge.exporting.formats), each reading only the outputs of the steps it needs:
onnx → int8-calibration → int8 / int8-trt → trt-int8, openvino-int8; onnx → trt-fp16, onnx-fp16, openvino. A step
that fails is a failed row, the steps that do not need it still run, and the exit code says the worst outcome
(0 ok, 4 parity inconclusive (too few images to tell), 3 outside the parity tolerance (the data show it),
2 a step failed on a user-fixable problem, 1 a step crashed).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from tledge.errors import ParityError, TledgeError
from tledge.exporting.checks import check_parity, compare_flavours, parity_data
from tledge.exporting.context import Calibrated, ExportContext
from tledge.exporting.formats import ExportFormat, parse_formats, plan, target_path
from tledge.exporting.options import ExportOptions
from tledge.exporting.prepare import prepare
from tledge.exporting.result import ArtifactRow, ExportResult, next_commands, worst_outcome
from tledge.options import build
from tledge.paths import clean_stale_temp_files

log = logging.getLogger(__name__)


def export_run(source: str | Path, formats: str | Sequence[str] | None = None, out_dir: str | Path | None = None, *,
               options: ExportOptions | None = None,
               raise_on_failure: bool = True, **values: Any) -> ExportResult:
    """Export a run folder (or a best.pt) to `formats`, check parity, write parity.json; see module doc.

    `values` are ExportOptions fields (opset=17, calib_images=256, ...). Raises TledgeError (exit 2) for user
    mistakes before anything is written; after the steps ran, raises ParityError (exit 3: over tolerance),
    ParityInconclusive (exit 4: too few parity images to tell) or ExportFailed (exit 2 or 1) when
    `raise_on_failure`, else returns the result with `.failure` set.
    """
    if options is None:
        if formats is not None:
            values["formats"] = formats
        if out_dir is not None:
            values["out"] = out_dir
        options = build(ExportOptions, values, "export option")
    ctx = prepare(source, options)
    steps = plan_steps(ctx)
    created = not ctx.out.exists()
    ctx.out.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(ctx.out)
    try:
        result = ExportResult(ctx.out)
        log.info(f"exporting {ctx.ckpt} → {ctx.out}/ ({', '.join(requested_formats(ctx.options))})")
        with tempfile.TemporaryDirectory(prefix="tledge-export-") as tmp:
            outputs = run_steps(dataclasses.replace(ctx, tmp=Path(tmp)), steps, result)
        calibrated = outputs.get("int8-calibration")
        _write_deploy_files(ctx, result, outputs)
        parity_set = parity_data(ctx)
        checked = [r for r in result.rows if r.ok]
        if parity_set is not None and checked:
            check_parity(result, checked, ctx.model, ctx.card, parity_set, ctx.tolerances,
                         pack_images=ctx.options.pack_images)
        _write_int8_report(ctx, result, calibrated)
        result.next_commands = next_commands(result, ctx.run_dir, ctx.options.parity_data)
        result.failure = worst_outcome(result)
        _record_in_tracking(ctx, result)
        search = calibrated.search if calibrated is not None else None
        if search is not None and search.shown_over and (result.failure is None or result.failure.exit_code in (3, 4)):
            report = Path(o.int8_report) if (o := ctx.options).int8_report else ctx.out / "int8_report.md"
            result.failure = ParityError(search.explain() + f"\n(report: {report}; the INT8 file is written for "
                                         "inspection and its card says the val data show it over budget)")
    finally:
        if created and ctx.out.is_dir() and not any(ctx.out.iterdir()):
            ctx.out.rmdir()  # nothing was written: leave no empty folder behind
    if result.failure is not None and raise_on_failure:
        raise result.failure
    return result


def _record_in_tracking(ctx: ExportContext, result: ExportResult) -> None:
    """A run tracked in MLflow (RUN/tracking.json) gets this export's artifacts and parity verdicts."""
    from tledge.training.tracking import record_export

    files = [r.path for r in result.rows if r.ok and r.path is not None]
    if result.parity_path is not None:
        files.append(result.parity_path)
    record_export(ctx.run_dir, result.rows, files)


def requested_formats(options: ExportOptions) -> list[str]:
    return [f.name for f in parse_formats(options.formats)]


@dataclasses.dataclass(frozen=True)
class Step:
    """A planned step: its row of the format table and whether the export table shows it."""

    format: ExportFormat
    name: str  # the row's name (the format's, or e.g. onnx-uint8 for --input uint8)
    shown: bool

    @property
    def needs(self) -> tuple[str, ...]:
        return self.format.needs


def plan_steps(ctx: ExportContext) -> list[Step]:
    """The steps the requested formats (and options such as --input) need, in dependency order."""
    return [Step(fmt, fmt.row_name(ctx.options), shown)
            for fmt, shown in plan(ctx.options, requested_formats(ctx.options))]


def run_steps(ctx: ExportContext, steps: Sequence[Step], result: ExportResult) -> dict[str, Any]:
    """Run each step whose inputs exist, giving it those inputs; a failure becomes its row's status and the run
    goes on. Returns every step's output (a file's Path, or the calibration step's Calibrated)."""
    from tledge.runtime.backends import kind_of

    outputs: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for step in steps:
        fmt = step.format
        missing = [n for n in fmt.needs if n in failed]
        row = ArtifactRow(step.name, None, fmt.precision)
        if missing:
            row.error, row.exit_code = f"skipped: {missing[0]} failed", 0
            failed[fmt.name] = row.error
        else:
            started = time.perf_counter()
            output = None
            try:
                output = fmt.build(ctx, {n: outputs[n] for n in fmt.needs}, target_path(ctx.out, fmt, ctx.options))
            except TledgeError as exc:
                row.error, row.exit_code = f"failed: {_first_line(exc)}", exc.exit_code
                row.failure = exc
            except Exception as exc:  # noqa: BLE001 - one format's crash must not stop the others
                row.error, row.exit_code = f"failed: {type(exc).__name__}: {_first_line(exc)}", 1
            row.seconds = time.perf_counter() - started
            if row.error is None:
                outputs[fmt.name] = output
                if isinstance(output, Path):
                    row.path, row.size_mb = output, kind_of(output).backend.artifact_bytes(output) / 1e6
            else:
                failed[fmt.name] = row.error
                log.info(f"{step.name}: {row.error}")  # the error line at the end says it once on stderr
        if step.shown or (row.error is not None and not row.error.startswith("skipped")):
            result.rows.append(row)  # a hidden step (calibration) shows up only when it fails
    cpu_int8 = [r for r in result.rows if r.format in ("int8", "int8-trt") and r.ok]
    if len(cpu_int8) == 2:
        compare_flavours(outputs["onnx"], {"u8s8": cpu_int8[0], "s8s8": cpu_int8[1]}, ctx.card)
    return outputs


def _write_deploy_files(ctx: ExportContext, result: ExportResult, outputs: dict[str, Any]) -> None:
    """labels.txt, DeepStream/Triton configs and DEPLOY.md for the ONNX artifacts (tledge.exporting.deploy_files)."""
    from tledge.exporting.deploy_files import deploy_commands, write_deploy_files

    paths = [r.path for r in result.rows if r.ok and r.path is not None]
    if outputs.get("int8-trt") and outputs["int8-trt"] not in paths:
        paths.append(outputs["int8-trt"])
    if not paths:  # nothing was exported: nothing to deploy (and no folder of labels alone left behind)
        return
    try:
        written = write_deploy_files(ctx.out, paths, ctx.card, ctx.options.max_batch)
    except TledgeError as exc:
        log.warning(f"deployment files not written: {_first_line(exc)}")
        return
    result.deploy_files = written
    result.deploy_commands = deploy_commands(ctx.out, ctx.card)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _write_int8_report(ctx: ExportContext, result: ExportResult, calibrated: Calibrated | None) -> None:
    o = ctx.options
    search, qat, recipe = (calibrated.search, calibrated.qat_facts, calibrated.recipe) if calibrated else (None,) * 3
    if search is None and qat is None and recipe is None and o.int8_report is None:
        return
    from tledge.exporting.int8_recipe import write_report

    report = write_report(Path(o.int8_report) if o.int8_report else ctx.out / "int8_report.md", search,
                          [r for r in result.rows if r.kind == "int8" and r.ok], {"qat": qat, "recipe": recipe})
    log.info(f"int8 report: {report}")


Export = ExportResult  # the name the public API documents (tledge.export(...) returns one)
