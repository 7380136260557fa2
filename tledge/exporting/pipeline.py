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

import logging
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tledge.atomic import write_json
from tledge.errors import ParityError, TledgeError
from tledge.exporting.checks import check_parity, compare_flavours, parity_data
from tledge.exporting.formats import FORMAT_OPTIONS, FORMATS, INT8_TRT_FILENAME, artifact_path, parse_formats
from tledge.exporting.options import ExportOptions, check_options, int8_search_mode
from tledge.exporting.result import ArtifactRow, ExportResult, next_commands, worst_outcome
from tledge.image_files import find_images
from tledge.options import build
from tledge.paths import clean_stale_temp_files
from tledge.splits import SPLITS_FILE, Splits

log = logging.getLogger(__name__)

DEFAULT_FORMATS = ("onnx", "int8")


def default_formats() -> list[str]:
    from tledge.exporting.tensorrt_build import tensorrt_available

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
    job = prepare(source, options)
    steps = plan_steps(job)
    created = not job.out.exists()
    job.out.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(job.out)
    try:
        result = ExportResult(job.out)
        log.info(f"exporting {job.ckpt} → {job.out}/ ({', '.join(requested_formats(job.options))})")
        with tempfile.TemporaryDirectory(prefix="tledge-export-") as tmp:
            job.tmp = Path(tmp)
            run_steps(job, steps, result)
        _write_deploy_files(job, result)
        parity_set = parity_data(job)
        checked = [r for r in result.rows if r.ok]
        if parity_set is not None and checked:
            check_parity(result, checked, job.model, job.card, parity_set, job.tolerances,
                         pack_images=job.options.pack_images)
        _write_int8_report(job, result)
        result.next_commands = next_commands(result, job.run_dir, job.options.parity_data)
        result.failure = worst_outcome(result)
        _record_in_tracking(job, result)
        if job.search is not None and job.search.shown_over and (result.failure is None or result.failure.exit_code in (3, 4)):
            report = Path(o.int8_report) if (o := job.options).int8_report else job.out / "int8_report.md"
            result.failure = ParityError(job.search.explain() + f"\n(report: {report}; the INT8 file is written for "
                                         "inspection and its card says the val data show it over budget)")
    finally:
        if created and job.out.is_dir() and not any(job.out.iterdir()):
            job.out.rmdir()  # nothing was written: leave no empty folder behind
    if result.failure is not None and raise_on_failure:
        raise result.failure
    return result


def _record_in_tracking(job: ExportJob, result: ExportResult) -> None:
    """A run tracked in MLflow (RUN/tracking.json) gets this export's artifacts and parity verdicts."""
    from tledge.training.tracking import record_export

    files = [r.path for r in result.rows if r.ok and r.path is not None]
    if result.parity_path is not None:
        files.append(result.parity_path)
    record_export(job.run_dir, result.rows, files)


def requested_formats(options: ExportOptions) -> list[str]:
    return [f.name for f in parse_formats(options.formats)]


def prepare(source: str | Path, options: ExportOptions) -> ExportJob:
    """Check everything that can be checked and load the checkpoint; nothing is written here."""
    from tledge.checkpoint import resolve_checkpoint
    from tledge.models.restore import load_model
    from tledge.exporting import int8 as int8_mod
    from tledge.exporting.onnx_export import choose_exporter

    if options.formats is None:
        from tledge.exporting.tensorrt_build import tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason and "not installed" not in reason:  # TensorRT is here but cannot be used: say why
            log.warning(f"trt-fp16 left out of the default formats: {reason}")
        options = dataclasses.replace(options, formats=tuple(default_formats()))
    o = options
    fmts = parse_formats(o.formats)
    names = {f.name for f in fmts}
    check_options(fmts, {name: getattr(o, name) for name in FORMAT_OPTIONS})
    search_mode = int8_search_mode(o)
    from tledge.verification.parity import parse_tolerance

    tolerances = parse_tolerance(o.tolerance)
    opset = 17 if o.opset is None else int(o.opset)
    exporter = choose_exporter(opset, o.exporter)
    if any(f.name.startswith("openvino") for f in fmts):  # [issue 23 wiring] a missing extra is found before any work
        from tledge.runtime.backends.openvino_backend import import_openvino

        import_openvino("the openvino export formats")
    profile = None
    if any(f.needs_gpu for f in fmts):
        from tledge.exporting.tensorrt_build import import_tensorrt, make_profile, require_gpu

        profile = make_profile(o.batch, o.max_batch)
        import_tensorrt()
        require_gpu()

    # Source: a run folder (best.pt + splits.json) or a bare checkpoint. Output paths are checked first.
    from tledge.paths import check_output_dir, check_output_file, check_outputs_apart
    from tledge.staleness import file_sha256

    source = Path(source)
    ckpt = resolve_checkpoint(source)
    run_dir = source if source.is_dir() else (ckpt.parent if (ckpt.parent / SPLITS_FILE).is_file() else None)
    out = check_output_dir(o.out if o.out is not None else (run_dir or ckpt.parent) / "export", "--out")
    if o.int8_report is not None:
        check_output_file(o.int8_report, "--report")
    check_outputs_apart([("--out", out), ("--report", o.int8_report)],
                        [("the checkpoint", ckpt), ("--calib-data", o.calib_data), ("--parity-data", o.parity_data),
                         ("--int8-recipe", o.int8_recipe)])
    splits = Splits.load(run_dir) if run_dir is not None and (run_dir / SPLITS_FILE).is_file() else None
    if splits is not None and o.parity and o.parity_data is None:
        splits.paths("test")  # a data folder moved since training is one error now, not after the export
    model, card = load_model(ckpt)
    card = card.replace(checkpoint_sha256=file_sha256(ckpt))

    # Calibration images (real photos only; checked before any export work).
    calib_paths: list[Path] = []
    calib_source = ""
    if _wants_cpu_int8(names) or _wants_trt_int8(o, names):
        if o.calib_data is not None:
            if not Path(o.calib_data).is_dir():
                raise TledgeError(f"calibration folder not found: {o.calib_data}")
            found, calib_source = find_images(o.calib_data), str(o.calib_data)
        elif splits is not None and splits.items.get("train"):
            found, calib_source = splits.paths("train"), f"train split of {run_dir}"
        else:
            raise TledgeError(f"INT8 needs real calibration images: {ckpt} has no {SPLITS_FILE} next to it; "
                              "pass --calib-data DIR (a folder of representative photos)")
        count = int8_mod.DEFAULT_CALIBRATION_IMAGES if o.calib_images is None else o.calib_images
        calib_paths = int8_mod.select_calibration_images(found, count, calib_source)
    wants_int8 = _wants_cpu_int8(names) or _wants_trt_int8(o, names)
    if search_mode != "off" and wants_int8 and (splits is None or not splits.items.get("val")):
        if o.int8_budget is not None or o.int8_search is not None or o.int8_methods is not None:
            raise TledgeError("the INT8 search (--int8-budget, --int8-search, --int8-methods) judges on the run's val "
                              "split, and this source has none (a run folder trained with a val split is needed); use "
                              "--int8-recipe or plain --calib-method instead")
        log.info("note: no val split to judge INT8 on: calibrating with minmax, without the accuracy-budgeted search "
                 "(the parity check below still judges it)")
        search_mode = "off"
    if o.qat_epochs and (splits is None or not splits.items.get("train")):
        raise TledgeError("--qat-epochs fine-tunes on the run's train split; this source has no splits.json")
    method, percentile, nodes = o.calib_method or "minmax", o.calib_percentile, o.nodes_to_exclude
    recipe = None
    if o.int8_recipe is not None:
        from tledge.exporting.int8_recipe import load_recipe

        recipe = load_recipe(o.int8_recipe)
        method, percentile, nodes = recipe["method"], recipe["percentile"], recipe["nodes_to_exclude"]
    job = ExportJob(o, ckpt, run_dir, splits, model, card, out, opset, exporter, profile, calib_paths, calib_source, method, percentile, nodes, recipe, tolerances,
                    search_mode=search_mode)
    if o.parity and o.parity_data is not None:
        from tledge.verification.parity import labelled_folder

        job.parity_set = labelled_folder(o.parity_data, card)  # checked now: a bad folder fails before any work
    return job


def _wants_cpu_int8(names: set[str]) -> bool:  # [issue 23 wiring] openvino-int8 is converted from model.int8.onnx
    return "int8" in names or "openvino-int8" in names


def _wants_trt_int8(o: ExportOptions, names: set[str]) -> bool:
    return "trt-int8" in names or ("int8" in names and o.int8_flavours == "both")


# ------------------------------------------------------------------------------------------------ steps
def _build_onnx(job: ExportJob) -> Path:
    from tledge.exporting.onnx_export import export_onnx

    return export_onnx(job.model, job.card, artifact_path(job.out, FORMATS["onnx"]), opset=job.opset,
                       batch=job.onnx_batch, dynamo=job.exporter == "dynamo")


def _preprocessed_name(o: ExportOptions) -> str | None:
    from tledge.exporting.preprocess_graph import artifact_name

    return artifact_name(o.input or "float", o.output or "logits")


def _build_preprocessed(job: ExportJob) -> Path:
    """--input/--output: model.onnx with the preprocessing (and softmax) inside the graph."""
    from tledge.exporting.preprocess_graph import add_preprocessing

    return add_preprocessing(job.outputs["onnx"], job.out / _preprocessed_name(job.options),
                             job.options.input or "float", job.options.output or "logits")


def _build_calibration(job: ExportJob) -> None:
    """QAT fine-tuning and the budget search, when asked: they decide what the INT8 steps quantize and how."""
    from tledge.exporting.onnx_export import export_onnx

    o, tmp = job.options, job.tmp
    job.int8_source = job.outputs["onnx"]
    if o.qat_epochs:
        from tledge.exporting.qat import qat_finetune

        log.info(f"quantization-aware fine-tuning: {o.qat_epochs} epoch(s) on the train split of {job.run_dir}")
        qmodel, job.qat_facts = qat_finetune(job.model, job.card, job.splits.paths("train"),
                                             job.splits.labels("train"), o.qat_epochs, o.qat_lr,
                                             images_per_epoch=o.qat_images)
        job.int8_source = tmp / "model.qat.onnx"
        export_onnx(qmodel, job.card, job.int8_source, opset=job.opset, batch=job.onnx_batch,
                    dynamo=job.exporter == "dynamo")
    if job.search_mode == "off":  # calibration fixed by the options: one pass, cached for both flavours
        from tledge.exporting.calibration import Calibration

        job.calibration_cache = Calibration(job.int8_source, job.calib_paths, tmp / "calibration").cache_for(
            job.method, job.percentile)
        return None
    from tledge.exporting import int8_recipe, int8_search

    splits = job.splits
    budget = float(o.int8_budget) if o.int8_budget is not None else job.tolerances["int8"]["acc_drop"]
    val = int8_search.load_val(splits.paths("val"), splits.labels("val"), job.card, f"val split of {job.run_dir}")
    search = int8_search.search_int8(job.outputs["onnx"], job.int8_source, tmp / "search", job.calib_paths, val,
                                     budget, o.int8_methods, o.int8_max_groups or int8_search.DEFAULT_MAX_GROUPS,
                                     job.calib_source, mode=job.search_mode)
    job.search = search
    job.method, job.percentile, job.nodes = search.method, search.percentile, search.nodes_excluded
    job.calibration_cache = search.cache_path
    if not search.fits and search.shown_over:  # still written, with its verdict, for the user to inspect
        log.warning(f"the val data show every INT8 candidate over the {budget:g}-pt budget; writing the best "
                    f"({search.chosen.label}, {search.chosen.delta_text()}) with that verdict; the export will exit 3")
    elif not search.fits:
        log.warning(f"no INT8 candidate is within {budget:g} pt on val by its estimate, but "
                    f"{search.val_images} val images cannot show it is over either; keeping the closest "
                    f"({search.chosen.label}) and letting the parity check judge it")
    write_json(job.out / int8_recipe.RECIPE_FILE, search.recipe())
    return None


def _quantizer(flavour: str, filename: str) -> Callable[[ExportJob], Path]:
    def build_int8(job: ExportJob) -> Path:
        from tledge.exporting import int8 as int8_mod

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
        from tledge.exporting.tensorrt_build import build_engine

        fmt = FORMATS[fmt_name]
        # work_dir: the FP16 ONNX a strongly typed build parses is an intermediate, not an artifact (beside
        # the engines, bench would take it for one more model).
        return build_engine(job.outputs[source_step], artifact_path(job.out, fmt), fmt.precision, job.profile,
                            workspace_mib=job.options.workspace, work_dir=job.tmp)

    return build


def plan_steps(job: ExportJob) -> list[Step]:
    """The steps the requested formats need, in dependency order."""
    names = set(requested_formats(job.options))
    wants_trt_int8 = _wants_trt_int8(job.options, names)
    steps = [Step("onnx", "fp32", (), _build_onnx, row="onnx" in names)]
    if _wants_cpu_int8(names) or wants_trt_int8:
        steps.append(Step("int8-calibration", "", ("onnx",), _build_calibration, row=False))
    if _wants_cpu_int8(names):
        steps.append(Step("int8", "int8", ("int8-calibration",), _quantizer("u8s8", FORMATS["int8"].filename),
                          row="int8" in names))
    if wants_trt_int8:
        steps.append(Step("int8-trt", "int8", ("int8-calibration",), _quantizer("s8s8", INT8_TRT_FILENAME)))
    preprocessed = _preprocessed_name(job.options)
    if preprocessed:
        steps.append(Step("onnx-" + preprocessed[len("model."):-len(".onnx")], "fp32", ("onnx",), _build_preprocessed))
    if "trt-fp16" in names:
        steps.append(Step("trt-fp16", "fp16", ("onnx",), _engine("trt-fp16", "onnx")))
    if "trt-int8" in names:
        steps.append(Step("trt-int8", "int8", ("int8-trt",), _engine("trt-int8", "int8-trt")))
    # [issue 23 wiring] the new formats' steps (to become rows of the format table)
    if "onnx-fp16" in names:
        steps.append(Step("onnx-fp16", "fp16", ("onnx",), _converted("onnx-fp16", "onnx")))
    if "openvino" in names:
        steps.append(Step("openvino", "fp32", ("onnx",), _converted("openvino", "onnx")))
    if "openvino-int8" in names:
        steps.append(Step("openvino-int8", "int8", ("int8",), _converted("openvino-int8", "int8")))
    return steps


def _converted(fmt_name: str, source_step: str) -> Callable[[ExportJob], Path]:
    """[issue 23 wiring] A format converted from another step's file by its own module."""
    def build(job: ExportJob) -> Path:
        target = artifact_path(job.out, FORMATS[fmt_name])
        if fmt_name == "onnx-fp16":
            from tledge.exporting.onnx_fp16 import export_onnx_fp16

            return export_onnx_fp16(job.outputs[source_step], target)
        from tledge.exporting.openvino_ir import export_openvino

        return export_openvino(job.outputs[source_step], target)

    return build


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
                from tledge.runtime.backends import kind_of

                row.path, row.size_mb = path, kind_of(path).backend.artifact_bytes(path) / 1e6
            if row.error is not None:
                failed[step.name] = row.error
                log.info(f"{step.name}: {row.error}")  # the error line at the end says it once on stderr
        if step.row or (row.error is not None and not row.error.startswith("skipped")):
            result.rows.append(row)  # a hidden step (calibration) shows up only when it fails
    cpu_int8 = [r for r in result.rows if r.format in ("int8", "int8-trt") and r.ok]
    if len(cpu_int8) == 2:
        compare_flavours(job.outputs["onnx"], {"u8s8": cpu_int8[0], "s8s8": cpu_int8[1]}, job.card)


def _write_deploy_files(job: ExportJob, result: ExportResult) -> None:
    """labels.txt, DeepStream/Triton configs and DEPLOY.md for the ONNX artifacts (tledge.exporting.deploy_files)."""
    from tledge.exporting.deploy_files import deploy_commands, write_deploy_files

    paths = [r.path for r in result.rows if r.ok and r.path is not None]
    if job.outputs.get("int8-trt") and job.outputs["int8-trt"] not in paths:
        paths.append(job.outputs["int8-trt"])
    if not paths:  # nothing was exported: nothing to deploy (and no folder of labels alone left behind)
        return
    try:
        written = write_deploy_files(job.out, paths, job.card, job.options.max_batch)
    except TledgeError as exc:
        log.warning(f"deployment files not written: {_first_line(exc)}")
        return
    result.deploy_files = written
    result.deploy_commands = deploy_commands(job.out, job.card)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _write_int8_report(job: ExportJob, result: ExportResult) -> None:
    o = job.options
    if job.search is None and job.qat_facts is None and job.recipe is None and o.int8_report is None:
        return
    from tledge.exporting.int8_recipe import write_report

    report = write_report(Path(o.int8_report) if o.int8_report else job.out / "int8_report.md", job.search,
                          [r for r in result.rows if r.kind == "int8" and r.ok],
                          {"qat": job.qat_facts, "recipe": job.recipe})
    log.info(f"int8 report: {report}")


Export = ExportResult  # the name the public API documents (tledge.export(...) returns one)
