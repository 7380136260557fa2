"""Everything an export can check before it writes a file, and the context its steps share (ExportContext):
bad option ranges, an unknown format, an option no requested format uses, a missing extra or GPU, too few
calibration images or none at all. A mistake costs a second, not a half-finished export."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tledge.errors import TledgeError
from tledge.exporting.context import CalibrationPlan, ExportContext
from tledge.exporting.formats import parse_formats, plan
from tledge.exporting.options import ExportOptions, check_options, int8_search_mode
from tledge.image_files import find_images
from tledge.splits import SPLITS_FILE, Splits

log = logging.getLogger(__name__)

DEFAULT_FORMATS = ("onnx", "int8")


def default_formats() -> list[str]:
    from tledge.exporting.tensorrt_build import tensorrt_available

    return list(DEFAULT_FORMATS) + (["trt-fp16"] if tensorrt_available() else [])


def with_formats(options: ExportOptions) -> ExportOptions:
    """The options with --formats filled in: onnx and int8, plus trt-fp16 where TensorRT can build."""
    if options.formats is not None:
        return options
    from tledge.exporting.tensorrt_build import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason and "not installed" not in reason:  # TensorRT is here but cannot be used: say why
        log.warning(f"trt-fp16 left out of the default formats: {reason}")
    return dataclasses.replace(options, formats=tuple(default_formats()))


def prepare(source: str | Path, options: ExportOptions) -> ExportContext:
    """Check everything that can be checked and load the checkpoint; nothing is written here."""
    from tledge.checkpoint import resolve_checkpoint
    from tledge.exporting.onnx_export import choose_exporter
    from tledge.models.restore import load_model
    from tledge.paths import check_output_dir, check_output_file, check_outputs_apart
    from tledge.staleness import file_sha256
    from tledge.verification.parity import parse_tolerance

    o = with_formats(options)
    fmts = parse_formats(o.formats)
    check_options(fmts, o)
    search_mode = int8_search_mode(o)
    tolerances = parse_tolerance(o.tolerance)
    exporter = choose_exporter(o.opset, o.exporter)
    steps = [step for step, _ in plan(o, {f.name for f in fmts})]
    for step in steps:  # a missing extra is one line before any work
        if step.requires is not None:
            from tledge.errors import require

            require(step.requires[0], step.requires[1], f"the {step.name} export format")
    profile = None
    if any(step.needs_gpu for step in steps):
        from tledge.exporting.tensorrt_build import import_tensorrt, make_profile, require_gpu

        profile = make_profile(o.batch, o.engine_max_batch())
        import_tensorrt()
        require_gpu()

    # Source: a run folder (best.pt + splits.json) or a bare checkpoint. Output paths are checked first.
    source = Path(source)
    ckpt = resolve_checkpoint(source)
    run_dir = source if source.is_dir() else (ckpt.parent if (ckpt.parent / SPLITS_FILE).is_file() else None)
    out = check_output_dir(o.out_dir(run_dir or ckpt.parent), "--out")
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
    calibration = CalibrationPlan()
    if any(step.name == "int8-calibration" for step in steps):
        calibration = _calibration_plan(o, ckpt, run_dir, splits, search_mode)
    parity_set = None
    if o.parity and o.parity_data is not None:
        from tledge.verification.parity import labelled_folder

        parity_set = labelled_folder(o.parity_data, card)  # checked now: a bad folder fails before any work
    return ExportContext(o, ckpt, run_dir, splits, model, card, out, o.opset, exporter, profile, tolerances,
                         calibration, parity_set)


def _calibration_plan(o: ExportOptions, ckpt: Path, run_dir: Path | None, splits: Splits | None,
                      search_mode: str) -> CalibrationPlan:
    """Real calibration photos (--calib-data, else the run's train split), and whether the INT8 search runs."""
    from tledge.exporting import int8 as int8_mod

    if o.calib_data is not None:
        if not Path(o.calib_data).is_dir():
            raise TledgeError(f"calibration folder not found: {o.calib_data}")
        found, calib_source = find_images(o.calib_data), str(o.calib_data)
    elif splits is not None and splits.items.get("train"):
        found, calib_source = splits.paths("train"), f"train split of {run_dir}"
    else:
        raise TledgeError(f"INT8 needs real calibration images: {ckpt} has no {SPLITS_FILE} next to it; "
                          "pass --calib-data DIR (a folder of representative photos)")
    paths = int8_mod.select_calibration_images(found, o.calib_images, calib_source)
    if search_mode != "off" and (splits is None or not splits.items.get("val")):
        if o.int8_budget is not None or o.int8_search is not None or o.int8_methods is not None:
            raise TledgeError("the INT8 search (--int8-budget, --int8-search, --int8-methods) judges on the run's val "
                              "split, and this source has none (a run folder trained with a val split is needed); use "
                              "--int8-recipe or plain --calib-method instead")
        log.info("note: no val split to judge INT8 on: calibrating with minmax, without the accuracy-budgeted search "
                 "(the parity check below still judges it)")
        search_mode = "off"
    if o.qat_epochs and (splits is None or not splits.items.get("train")):
        raise TledgeError("--qat-epochs fine-tunes on the run's train split; this source has no splits.json")
    method, percentile, nodes, recipe = o.fixed_calibration_method(), o.calib_percentile, o.nodes_to_exclude, None
    if o.int8_recipe is not None:
        from tledge.exporting.int8_recipe import load_recipe

        recipe = load_recipe(o.int8_recipe)
        method, percentile, nodes = recipe["method"], recipe["percentile"], recipe["nodes_to_exclude"]
    return CalibrationPlan(tuple(paths), calib_source, method, percentile, nodes, recipe, search_mode)
