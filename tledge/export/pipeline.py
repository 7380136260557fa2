"""`tledge export`: checkpoint → one step per requested format → parity check → table, parity.json, next commands.

Everything the user got wrong is found before any work starts (bad option ranges, unknown format, an option no
requested format uses, no GPU for trt-*, too few calibration images, no calibration source), so a mistake costs
a second, not a half-finished export. Then each format of the format table is a step with its inputs (the
steps it reads) and its output file: onnx → int8 / int8-trt → trt-fp16 / trt-int8. A step that fails is a
failed row, the steps that do not need it still run, and the exit code says the worst outcome
(0 ok, 4 parity inconclusive (too few images to tell), 3 outside the parity tolerance (the data show it),
2 a step failed on a user-fixable problem, 1 a step crashed).
The FP32 ONNX is always written: every other format is built from it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tledge.atomic import write_json
from tledge.errors import ParityError, ParityInconclusive, TledgeError
from tledge.export.formats import FORMATS, INT8_TRT_FILENAME, artifact_path, check_options, parse_formats
from tledge.export.options import ExportOptions
from tledge.options import build
from tledge.paths import clean_stale_temp_files
from tledge.splits import SPLITS_FILE, Splits
from tledge.table import format_table

DEFAULT_FORMATS = ("onnx", "int8")
PARITY_FILE = "parity.json"
# Outcome severity for the exit code: a crash (1) outranks a user-fixable failure (2), which outranks parity (3).
SEVERITY = {0: 0, 4: 1, 3: 1, 2: 2, 1: 3}


class ExportFailed(TledgeError):
    """One or more export steps failed (the others ran; their rows and parity.json are written)."""


@dataclass
class ArtifactRow:
    format: str  # row name: a format name, or "int8-trt" for the symmetric TensorRT input
    path: Path | None
    kind: str  # fp32 | fp16 | int8 (what the parity gate judges it as)
    seconds: float = 0.0
    size_mb: float = 0.0
    parity: object | None = None  # ParityResult
    error: str | None = None  # why the step failed or was skipped
    exit_code: int = 0  # of the step's failure (2 user error, 3 budget, 1 crash)
    failure: TledgeError | None = None  # the step's own error, when it was a TledgeError

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        if self.error is not None:
            return self.error
        if self.parity is None:
            return "ok (no parity)"
        return {"within": "ok", "over": "OVER budget", "inconclusive": "inconclusive"}[self.parity.outcome]

    def table_row(self) -> dict:
        p = self.parity
        return {"format": self.format, "file": self.path.name if self.path else "-",
                "size MB": round(self.size_mb, 2) if self.ok else None,
                "time s": round(self.seconds, 2),
                "N": None if p is None else p.images,
                "agreement % (95%)": None if p is None else
                f"{p.agreement:.2f} ({p.agreement_ci[0]:.1f}-{p.agreement_ci[1]:.1f})",
                "acc %": None if p is None else round(p.acc_artifact, 2),
                "Δacc pt (95%)": None if p is None else
                f"{p.acc_delta:+.2f} ({p.acc_delta_ci[0]:+.2f} to {p.acc_delta_ci[1]:+.2f})",
                "resolves pt": None if p is None else round(p.resolvable_drop, 2),
                "max rel Δlogit": None if p is None else float(f"{p.max_rel_diff:.2e}"),
                "status": self.status}


@dataclass
class ExportResult:
    """What an export wrote: `result["int8"]` is the artifact's Path, `result.parity` the parity rows."""

    out_dir: Path
    rows: list[ArtifactRow] = field(default_factory=list)
    parity_path: Path | None = None
    outcome: str = "within"  # parity: within | over | inconclusive (the worst of the checked artifacts)
    parity_source: str = ""  # where the parity images came from
    next_commands: list[str] = field(default_factory=list)
    failure: TledgeError | None = None  # the worst step failure or parity failure, None when all is well

    def table(self) -> str:
        return format_table([r.table_row() for r in self.rows])

    @property
    def passed(self) -> bool:
        """Every checked artifact within its parity tolerance (the data show it)."""
        return self.outcome == "within"

    def path(self, name: str) -> Path:
        return self[name]

    def __getitem__(self, name: str) -> Path:
        for row in self.rows:
            if row.format == name:
                if row.path is None or not row.ok:
                    raise KeyError(f"{name}: {row.status}")
                return row.path
        raise KeyError(f"{name} was not exported (formats: {', '.join(r.format for r in self.rows)})")

    def __contains__(self, name: object) -> bool:
        return any(r.format == name and r.ok for r in self.rows)

    @property
    def parity(self) -> list[dict]:
        """One dict per checked artifact: format, images, agreement, accuracy difference, passed, ..."""
        return [{"format": r.format, **r.parity.to_dict()} for r in self.rows if r.parity is not None]

    @property
    def exit_code(self) -> int:
        return 0 if self.failure is None else self.failure.exit_code


def default_formats() -> list[str]:
    from tledge.export.tensorrt_build import tensorrt_available

    return list(DEFAULT_FORMATS) + (["trt-fp16"] if tensorrt_available() else [])


# ------------------------------------------------------------------------------------------------ plan
@dataclass
class ExportJob:
    """Everything the steps share, prepared (and checked) before any file is written."""

    options: ExportOptions
    ckpt: Path
    run_dir: Path | None
    splits: Splits | None
    model: Any
    card: Any
    out: Path
    opset: int
    exporter: str
    profile: Any
    calib_paths: list[Path]
    calib_source: str
    method: str
    percentile: float | None
    nodes: Sequence[str] | None
    recipe: dict | None
    tolerances: dict
    echo: Callable[[str], None]
    parity_set: Any = None  # ParityData from --parity-data (checked up front)
    tmp: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)  # step → file it wrote
    int8_source: Path | None = None  # what gets quantized: the ONNX, or its QAT fine-tuned copy
    calibration_cache: Path | None = None
    search: Any = None
    qat_facts: dict | None = None
    search_mode: str = "off"  # INT8 search on val: budget | full | off

    @property
    def onnx_batch(self) -> int | None:
        """A fixed ONNX batch only when no engine needs a dynamic N."""
        return self.options.batch if self.profile is None else None


@dataclass(frozen=True)
class Step:
    """One export step: the steps whose outputs it reads, and a build that returns the file it wrote."""

    name: str
    kind: str  # fp32 | fp16 | int8: the parity gate it is judged by ("" for steps without an artifact)
    needs: tuple[str, ...]
    build: Callable[[ExportJob], Path | None]
    row: bool = True  # shown as a row of the table (the calibration step is not)


def export_run(source: str | Path, formats: str | Sequence[str] | None = None, out_dir: str | Path | None = None, *,
               options: ExportOptions | None = None, echo: Callable[[str], None] = print,
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
    job = prepare(source, options, echo)
    steps = plan_steps(job)
    created = not job.out.exists()
    job.out.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(job.out)
    try:
        result = ExportResult(job.out)
        echo(f"exporting {job.ckpt} → {job.out}/ ({', '.join(requested_formats(job.options))})")
        with tempfile.TemporaryDirectory(prefix="tledge-export-") as tmp:
            job.tmp = Path(tmp)
            run_steps(job, steps, result)
        parity_set = _parity_data(job)
        checked = [r for r in result.rows if r.ok]
        if parity_set is not None and checked:
            _check_parity(result, checked, job.model, job.card, parity_set, job.tolerances, echo)
        _write_int8_report(job, result)
        echo(result.table())
        result.next_commands = _next_commands(result, job.run_dir, job.options.parity_data)
        echo("next:\n" + "\n".join(f"  {c}" for c in result.next_commands))
        result.failure = _worst_outcome(result)
    finally:
        if created and job.out.is_dir() and not any(job.out.iterdir()):
            job.out.rmdir()  # nothing was written: leave no empty folder behind
    if result.failure is not None and raise_on_failure:
        raise result.failure
    return result


def requested_formats(options: ExportOptions) -> list[str]:
    return [f.name for f in parse_formats(options.formats)]


def prepare(source: str | Path, options: ExportOptions, echo: Callable[[str], None]) -> ExportJob:
    """Check everything that can be checked and load the checkpoint; nothing is written here."""
    from tledge.checkpoint import resolve_checkpoint
    from tledge.train.restore import load_model
    from tledge.export import int8 as int8_mod
    from tledge.export.onnx_export import choose_exporter

    if options.formats is None:
        from tledge.export.tensorrt_build import tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason and "not installed" not in reason:  # TensorRT is here but cannot be used: say why
            echo(f"warning: trt-fp16 left out of the default formats: {reason}")
        options = dataclasses.replace(options, formats=tuple(default_formats()))
    o = options
    fmts = parse_formats(o.formats)
    names = {f.name for f in fmts}
    check_options(fmts, {"exporter": o.exporter, "batch": o.batch, "max_batch": o.max_batch,
                         "workspace": o.workspace, "calib_data": o.calib_data, "calib_images": o.calib_images,
                         "calib_method": o.calib_method, "calib_percentile": o.calib_percentile,
                         "int8_flavours": o.int8_flavours, "nodes_to_exclude": o.nodes_to_exclude,
                         "int8_budget": o.int8_budget, "int8_methods": o.int8_methods,
                         "int8_recipe": o.int8_recipe, "int8_report": o.int8_report,
                         "int8_max_groups": o.int8_max_groups, "int8_search": o.int8_search,
                         "qat_epochs": o.qat_epochs, "qat_lr": o.qat_lr,
                         "qat_images": o.qat_images})
    search_mode = _check_int8_options(o.int8_budget, o.int8_methods, o.int8_recipe, o.nodes_to_exclude,
                                      o.calib_method, o.calib_percentile, o.qat_epochs, o.qat_lr, o.int8_search,
                                      o.qat_images)
    from tledge.export.parity import parse_tolerance

    tolerances = parse_tolerance(o.tolerance)
    opset = 17 if o.opset is None else int(o.opset)
    exporter = choose_exporter(opset, o.exporter)
    profile = None
    if any(f.needs_gpu for f in fmts):
        from tledge.export.tensorrt_build import import_tensorrt, make_profile, require_gpu

        profile = make_profile(o.batch, o.max_batch)
        import_tensorrt()
        require_gpu()

    # Source: a run folder (best.pt + splits.json) or a bare checkpoint. Output paths are checked first.
    from tledge.paths import check_output_dir, check_output_file
    from tledge.staleness import file_sha256

    source = Path(source)
    ckpt = resolve_checkpoint(source)
    run_dir = source if source.is_dir() else (ckpt.parent if (ckpt.parent / SPLITS_FILE).is_file() else None)
    out = check_output_dir(o.out if o.out is not None else (run_dir or ckpt.parent) / "export", "--out")
    if o.int8_report is not None:
        check_output_file(o.int8_report, "--report")
    splits = Splits.load(run_dir) if run_dir is not None and (run_dir / SPLITS_FILE).is_file() else None
    model, card = load_model(ckpt)
    card = card.replace(checkpoint_sha256=file_sha256(ckpt))

    # Calibration images (real photos only; checked before any export work).
    calib_paths: list[Path] = []
    calib_source = ""
    if "int8" in names or _wants_trt_int8(o, names):
        if o.calib_data is not None:
            found, calib_source = int8_mod.find_images(o.calib_data), str(o.calib_data)
        elif splits is not None and splits.items.get("train"):
            found, calib_source = splits.paths("train"), f"train split of {run_dir}"
        else:
            raise TledgeError(f"INT8 needs real calibration images: {ckpt} has no {SPLITS_FILE} next to it; "
                              "pass --calib-data DIR (a folder of representative photos)")
        count = int8_mod.DEFAULT_CALIBRATION_IMAGES if o.calib_images is None else o.calib_images
        calib_paths = int8_mod.select_calibration_images(found, count, calib_source)
    wants_int8 = "int8" in names or _wants_trt_int8(o, names)
    if search_mode != "off" and wants_int8 and (splits is None or not splits.items.get("val")):
        if o.int8_budget is not None or o.int8_search is not None or o.int8_methods is not None:
            raise TledgeError("the INT8 search (--int8-budget, --int8-search, --int8-methods) judges on the run's val "
                              "split, and this source has none (a run folder trained with a val split is needed); use "
                              "--int8-recipe or plain --calib-method instead")
        echo("note: no val split to judge INT8 on: calibrating with minmax, without the accuracy-budgeted search "
             "(the parity check below still judges it)")
        search_mode = "off"
    if o.qat_epochs and (splits is None or not splits.items.get("train")):
        raise TledgeError("--qat-epochs fine-tunes on the run's train split; this source has no splits.json")
    method, percentile, nodes = o.calib_method or "minmax", o.calib_percentile, o.nodes_to_exclude
    recipe = None
    if o.int8_recipe is not None:
        from tledge.export.int8_search import load_recipe

        recipe = load_recipe(o.int8_recipe)
        method, percentile, nodes = recipe["method"], recipe["percentile"], recipe["nodes_to_exclude"]
    job = ExportJob(o, ckpt, run_dir, splits, model, card, out, opset, exporter, profile, calib_paths, calib_source, method, percentile, nodes, recipe, tolerances, echo,
                    search_mode=search_mode)
    if o.parity and o.parity_data is not None:
        from tledge.export.parity import labelled_folder

        job.parity_set = labelled_folder(o.parity_data, card)  # checked now: a bad folder fails before any work
    return job


def _wants_trt_int8(o: ExportOptions, names: set[str]) -> bool:
    return "trt-int8" in names or ("int8" in names and o.int8_flavours == "both")


# ------------------------------------------------------------------------------------------------ steps
def _build_onnx(job: ExportJob) -> Path:
    from tledge.export.onnx_export import export_onnx

    return export_onnx(job.model, job.card, artifact_path(job.out, FORMATS["onnx"]), opset=job.opset,
                       batch=job.onnx_batch, dynamo=job.exporter == "dynamo")


def _build_calibration(job: ExportJob) -> None:
    """QAT fine-tuning and the budget search, when asked: they decide what the INT8 steps quantize and how."""
    from tledge.export.onnx_export import export_onnx

    o, tmp = job.options, job.tmp
    job.int8_source = job.outputs["onnx"]
    if o.qat_epochs:
        from tledge.export.qat import qat_finetune

        job.echo(f"quantization-aware fine-tuning: {o.qat_epochs} epoch(s) on the train split of {job.run_dir}")
        qmodel, job.qat_facts = qat_finetune(job.model, job.card, job.splits.paths("train"),
                                             job.splits.labels("train"), o.qat_epochs, o.qat_lr,
                                             images_per_epoch=o.qat_images, echo=job.echo)
        job.int8_source = tmp / "model.qat.onnx"
        export_onnx(qmodel, job.card, job.int8_source, opset=job.opset, batch=job.onnx_batch,
                    dynamo=job.exporter == "dynamo")
    if job.search_mode == "off":  # calibration fixed by the options: one pass, cached for both flavours
        from tledge.export.calibration import Calibration

        job.calibration_cache = Calibration(job.int8_source, job.calib_paths, tmp / "calibration").cache_for(
            job.method, job.percentile)
        return None
    from tledge.export import int8_search

    splits = job.splits
    budget = float(o.int8_budget) if o.int8_budget is not None else job.tolerances["int8"]["acc_drop"]
    val = int8_search.load_val(splits.paths("val"), splits.labels("val"), job.card, f"val split of {job.run_dir}")
    search = int8_search.search_int8(job.outputs["onnx"], job.int8_source, tmp / "search", job.calib_paths, val,
                                     budget, o.int8_methods, o.int8_max_groups or int8_search.DEFAULT_MAX_GROUPS,
                                     job.calib_source, job.echo, mode=job.search_mode)
    job.search = search
    job.method, job.percentile, job.nodes = search.method, search.percentile, search.nodes_excluded
    job.calibration_cache = search.cache_path
    if not search.fits and search.shown_over:
        report = Path(o.int8_report) if o.int8_report else job.out / "int8_report.md"
        int8_search.write_report(report, search, [], {"qat": job.qat_facts})
        raise ParityError(search.explain() + f"\n(report: {report})")
    if not search.fits:
        job.echo(f"warning: no INT8 candidate is within {budget:g} pt on val by its estimate, but "
                 f"{search.val_images} val images cannot show it is over either; keeping the closest "
                 f"({search.chosen.label}) and letting the parity check judge it")
    int8_search.write_recipe(job.out / int8_search.RECIPE_FILE, search.recipe())
    return None


def _quantizer(flavour: str, filename: str) -> Callable[[ExportJob], Path]:
    def build_int8(job: ExportJob) -> Path:
        from tledge.export import int8 as int8_mod

        path = int8_mod.quantize_int8(job.int8_source, job.out / filename, flavour=flavour, images=job.calib_paths,
                                      method=job.method, percentile=job.percentile, nodes_to_exclude=job.nodes,
                                      calibration_source=job.calib_source, calibration_cache=job.calibration_cache)
        facts = {**({"search": job.search.to_card()} if job.search else {}),
                 **({"qat": job.qat_facts} if job.qat_facts else {}),
                 **({"recipe_source": job.recipe["source"]} if job.recipe else {})}
        if facts:
            int8_mod.record_latency(path, facts)
        return path

    return build_int8


def _engine(fmt_name: str, source_step: str) -> Callable[[ExportJob], Path]:
    def build(job: ExportJob) -> Path:
        from tledge.export.tensorrt_build import build_engine

        fmt = FORMATS[fmt_name]
        return build_engine(job.outputs[source_step], artifact_path(job.out, fmt), fmt.precision, job.profile,
                            workspace_mib=job.options.workspace, echo=job.echo)

    return build


def plan_steps(job: ExportJob) -> list[Step]:
    """The steps the requested formats need, in dependency order."""
    names = set(requested_formats(job.options))
    wants_trt_int8 = _wants_trt_int8(job.options, names)
    steps = [Step("onnx", "fp32", (), _build_onnx, row="onnx" in names)]
    if "int8" in names or wants_trt_int8:
        steps.append(Step("int8-calibration", "", ("onnx",), _build_calibration, row=False))
    if "int8" in names:
        steps.append(Step("int8", "int8", ("int8-calibration",), _quantizer("u8s8", FORMATS["int8"].filename)))
    if wants_trt_int8:
        steps.append(Step("int8-trt", "int8", ("int8-calibration",), _quantizer("s8s8", INT8_TRT_FILENAME)))
    if "trt-fp16" in names:
        steps.append(Step("trt-fp16", "fp16", ("onnx",), _engine("trt-fp16", "onnx")))
    if "trt-int8" in names:
        steps.append(Step("trt-int8", "int8", ("int8-trt",), _engine("trt-int8", "int8-trt")))
    return steps


def run_steps(job: ExportJob, steps: Sequence[Step], result: ExportResult) -> None:
    """Run each step whose inputs exist; a failure becomes its row's status and the run goes on."""
    failed: dict[str, str] = {}
    for step in steps:
        missing = [n for n in step.needs if n in failed]
        row = ArtifactRow(step.name, None, step.kind)
        if missing:
            row.error, row.exit_code = f"skipped: {missing[0]} failed", 0
            failed[step.name] = row.error
        else:
            started = time.perf_counter()
            try:
                path = step.build(job)
            except TledgeError as exc:
                row.error, row.exit_code = f"failed: {_first_line(exc)}", exc.exit_code
                row.failure = exc
            except Exception as exc:  # noqa: BLE001 - one format's crash must not stop the others
                row.error, row.exit_code = f"failed: {type(exc).__name__}: {_first_line(exc)}", 1
            row.seconds = time.perf_counter() - started
            if row.error is None and path is not None:
                path = Path(path)
                job.outputs[step.name] = path
                row.path, row.size_mb = path, path.stat().st_size / 1e6
            if row.error is not None:
                failed[step.name] = row.error
                job.echo(f"{step.name}: {row.error}")
        if step.row or (row.error is not None and not row.error.startswith("skipped")):
            result.rows.append(row)  # a hidden step (calibration) shows up only when it fails
    cpu_int8 = [r for r in result.rows if r.format in ("int8", "int8-trt") and r.ok]
    if len(cpu_int8) == 2:
        _compare_flavours(job.outputs["onnx"], {"u8s8": cpu_int8[0], "s8s8": cpu_int8[1]}, job.card, job.echo)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _worst_outcome(result: ExportResult) -> TledgeError | None:
    """The error the export ends with: the most severe step failure, else the parity failure, else None."""
    failures = [r for r in result.rows if r.error is not None and not r.error.startswith("skipped")]
    if failures:
        worst = max(failures, key=lambda r: SEVERITY.get(r.exit_code, 3))
        if len(failures) == 1 and worst.failure is not None:
            return worst.failure
        text = "; ".join(f"{r.format}: {r.error}" for r in failures)
        error = ExportFailed(f"export step failed: {text}")
        error.exit_code = worst.exit_code
        return error
    checked = [r.parity for r in result.rows if r.parity is not None]
    if result.outcome == "over":
        from tledge.export.parity import parity_message

        return ParityError(parity_message(checked))
    if result.outcome == "inconclusive":
        from tledge.export.parity import inconclusive_message

        return ParityInconclusive(inconclusive_message(checked, result.parity_source))
    return None


def _parity_data(job: ExportJob):
    """The run's test split, --parity-data, or none (with a warning)."""
    from tledge.export.parity import ParityData

    if not job.options.parity:
        return None
    if job.parity_set is not None:
        return job.parity_set
    if job.splits is not None and job.splits.items.get("test"):
        return ParityData(job.splits.paths("test"), job.splits.labels("test"), f"test split of {job.run_dir}")
    job.echo(f"warning: no parity check: {job.ckpt} has no test split next to it; pass --parity-data DIR to check")
    return None


def _write_int8_report(job: ExportJob, result: ExportResult) -> None:
    o = job.options
    if job.search is None and job.qat_facts is None and job.recipe is None and o.int8_report is None:
        return
    if job.search is not None and not job.search.fits and job.search.shown_over:
        return  # the search step wrote its own report
    from tledge.export.int8_search import write_report

    report = write_report(Path(o.int8_report) if o.int8_report else job.out / "int8_report.md", job.search,
                          [r for r in result.rows if r.kind == "int8" and r.ok],
                          {"qat": job.qat_facts, "recipe": job.recipe})
    job.echo(f"int8 report: {report}")


def _check_int8_options(budget, methods, recipe, nodes, calib_method, calib_percentile, qat_epochs, qat_lr,
                        search, qat_images=None) -> str:
    """The INT8 search mode ("budget", "full" or "off"); contradictory options are an error before any work.

    The accuracy-budgeted search is the default; fixing the calibration yourself (--calib-method,
    --calib-percentile, --exclude-nodes, --int8-recipe) means no search, and asking for both is an error.
    """
    fixed = [flag for flag, value in (("--int8-recipe", recipe), ("--exclude-nodes", nodes),
                                      ("--calib-method", calib_method), ("--calib-percentile", calib_percentile))
             if value]
    if search is not None and search not in ("budget", "full", "off"):
        raise TledgeError(f"--int8-search must be budget, full or off, got {search!r}")
    if recipe is not None and len(fixed) > 1:
        raise TledgeError("--int8-recipe fixes the calibration and the float nodes; it cannot be combined with "
                          "--exclude-nodes, --calib-method or --calib-percentile")
    searching = [flag for flag, value in (("--int8-budget", budget), ("--int8-methods", methods),
                                          ("--int8-search", search if search != "off" else None)) if value is not None]
    if fixed and searching:
        raise TledgeError(f"{searching[0]} asks the INT8 search to choose the calibration and the float nodes, and "
                          f"{fixed[0]} fixes them; drop one (--int8-methods restricts the search's candidates)")
    if search == "off" and (budget is not None or methods is not None):
        raise TledgeError("--int8-budget and --int8-methods belong to the INT8 search; drop them or --int8-search off")
    if qat_lr is not None and not qat_epochs:
        raise TledgeError("--qat-lr applies to quantization-aware fine-tuning; give --qat-epochs N too")
    if qat_images is not None and not qat_epochs:
        raise TledgeError("--qat-images applies to quantization-aware fine-tuning; give --qat-epochs N too")
    if methods is not None:
        from tledge.export.int8_search import parse_candidates

        parse_candidates(methods)
    if fixed or search == "off":
        return "off"
    return search or "budget"


def _interleaved_latency_ms(paths: dict, card, rounds: int = 5, runs: int = 10) -> dict[str, float]:
    """Batch-1 latency of several ONNX files timed in alternating rounds (so a noisy minute hits them all);
    per file the median over every call. Single back-to-back timings on a shared host are noise."""
    import numpy as np

    from tledge.runtime.backends import load_backend

    backends = {name: load_backend(path, device="cpu") for name, path in paths.items()}
    try:
        height, width = card.input_size
        times: dict[str, list[float]] = {name: [] for name in backends}
        inputs = {name: np.random.default_rng(0).standard_normal(
            (b.max_batch or 1, 3, height, width)).astype(np.float32) for name, b in backends.items()}
        for name, backend in backends.items():  # warm-up
            for _ in range(3):
                backend.predict(inputs[name])
        for _ in range(rounds):
            for name, backend in backends.items():
                for _ in range(runs):
                    start = time.perf_counter()
                    backend.predict(inputs[name])
                    times[name].append(time.perf_counter() - start)
        return {name: float(np.median(t) * 1000.0) for name, t in times.items()}
    finally:
        for backend in backends.values():
            backend.close()


def _compare_flavours(onnx_path: Path, rows: dict, card, echo) -> None:
    """Batch-1 latency of FP32 and both INT8 flavours on this CPU (interleaved rounds), recorded in each INT8 card."""
    from tledge.export.int8 import record_latency

    latencies = _interleaved_latency_ms({"fp32": onnx_path, **{f: row.path for f, row in rows.items()}}, card)
    compared = {k: round(v, 3) for k, v in latencies.items()}
    for flavour, row in rows.items():
        record_latency(row.path, {"latency_ms_batch1": compared[flavour], "latency_compared_ms_batch1": compared})
    echo("  int8 latency, batch 1, this CPU, interleaved: " + ", ".join(f"{k} {v:.2f} ms" for k, v in compared.items()))
    if latencies["s8s8"] < latencies["u8s8"]:
        echo("  note: symmetric s8s8 is faster than u8s8 on this CPU; model.int8.trt.onnx also runs in ONNX Runtime")


def _check_parity(result: ExportResult, rows: list[ArtifactRow], model, card, data, tolerances, echo) -> None:
    import numpy as np
    import torch

    from tledge.export.parity import run_parity
    from tledge.stats import combine

    # channels_last: oneDNN's faster CPU convolutions (MobileNetV2 224 px: 32 → 20 ms/image measured), the
    # same FP32 arithmetic up to summation order (~1e-6 of the logit scale; the ONNX gate is 1e-4).
    model = model.to(memory_format=torch.channels_last)

    def reference(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return model(x).float().numpy()

    artifacts = [(row.format, row.path, row.kind) for row in rows]
    echo(f"parity: {len(data.paths)} images from {data.source}, PyTorch FP32 vs {', '.join(a[0] for a in artifacts)}")
    results, info = run_parity(reference, artifacts, data, card, tolerances)
    info["skipped"] = list(getattr(data, "skipped", [])) + list(info["skipped"])  # found by the folder reader too
    echo("  ran on: " + ", ".join(f"{p.name} {p.backend}" for p in results)
         + " (FP32 ONNX on FP32 arithmetic: CPU, or CUDA with TF32 off)")
    for row, parity in zip(rows, results):
        row.parity = parity
    result.outcome = combine([p.outcome for p in results])
    result.parity_source = data.source
    if info["skipped"]:
        echo(f"warning: parity skipped {len(info['skipped'])} unreadable image(s): {', '.join(info['skipped'][:5])}")
    report = {"source": info["source"], "images": info["images"], "skipped": info["skipped"],
              "tolerances": tolerances, "outcome": result.outcome, "passed": result.passed,
              "intervals": "95%: Wilson (agreement), Tango paired score (accuracy difference); see tledge/stats.py",
              "results": [{**p.to_dict(), "seconds": round(r.seconds, 3), "size_mb": round(r.size_mb, 3)}
                          for r, p in zip(rows, results)],
              "failed": [{"format": r.format, "status": r.status} for r in result.rows if not r.ok]}
    result.parity_path = result.out_dir / PARITY_FILE
    write_json(result.parity_path, report)


def _next_commands(result: ExportResult, run_dir: Path | None, parity_data) -> list[str]:
    order = ("trt-fp16", "trt-int8", "int8", "onnx")
    preferred = sorted((r for r in result.rows if r.format in order and r.ok), key=lambda r: order.index(r.format))
    artifact = preferred[0].path if preferred else result.out_dir / "model.onnx"
    commands = [f"tledge predict {artifact} IMAGE_OR_FOLDER_OR_CAMERA"]
    if run_dir is not None:
        commands.append(f"tledge bench {run_dir}")
    else:
        files = " ".join(str(r.path) for r in result.rows if r.ok)
        commands.append(f"tledge bench {files}" + (f" --data {parity_data}" if parity_data else ""))
    return commands


Export = ExportResult  # the name the public API documents (tledge.export(...) returns one)
