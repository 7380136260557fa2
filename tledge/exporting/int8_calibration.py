"""The int8-calibration step: QAT fine-tuning and the accuracy-budgeted search, when asked, decide what the INT8
steps quantize and how; otherwise one calibration pass with the options' method, cached for every flavour."""

from __future__ import annotations

import logging
from typing import Mapping

from tledge.atomic import write_json
from tledge.exporting.context import Calibrated, ExportContext

log = logging.getLogger(__name__)


def build(ctx: ExportContext, inputs: Mapping[str, object], target: None = None) -> Calibrated:
    from tledge.exporting.onnx_export import export_onnx

    o, plan, tmp = ctx.options, ctx.calibration, ctx.tmp
    onnx_path = inputs["onnx"]
    source, qat_facts = onnx_path, None
    if o.qat_epochs:
        from tledge.exporting.qat import qat_finetune

        log.info(f"quantization-aware fine-tuning: {o.qat_epochs} epoch(s) on the train split of {ctx.run_dir}")
        qmodel, qat_facts = qat_finetune(ctx.model, ctx.card, ctx.splits.paths("train"), ctx.splits.labels("train"),
                                         o.qat_epochs, o.qat_lr, images_per_epoch=o.qat_images)
        source = tmp / "model.qat.onnx"
        export_onnx(qmodel, ctx.card, source, opset=ctx.opset, batch=ctx.onnx_batch, dynamo=ctx.exporter == "dynamo")
    fixed = dict(source=source, images=plan.paths, images_source=plan.source, qat_facts=qat_facts, recipe=plan.recipe)
    if plan.search_mode == "off":  # calibration fixed by the options: one pass, cached for both flavours
        from tledge.exporting.calibration import Calibration

        cache = Calibration(source, plan.paths, tmp / "calibration").cache_for(plan.method, plan.percentile)
        return Calibrated(method=plan.method, percentile=plan.percentile, nodes=plan.nodes, cache=cache, **fixed)
    from tledge.exporting import int8_recipe, int8_search

    splits = ctx.splits
    budget = o.search_budget(ctx.tolerances)
    val = int8_search.load_val(splits.paths("val"), splits.labels("val"), ctx.card, f"val split of {ctx.run_dir}")
    search = int8_search.search_int8(onnx_path, source, tmp / "search", list(plan.paths), val, budget,
                                     o.int8_methods, o.int8_max_groups, plan.source, mode=plan.search_mode)
    if not search.fits and search.shown_over:  # still written, with its verdict, for the user to inspect
        log.warning(f"the val data show every INT8 candidate over the {budget:g}-pt budget; writing the best "
                    f"({search.chosen.label}, {search.chosen.delta_text()}) with that verdict; the export will exit 3")
    elif not search.fits:
        log.warning(f"no INT8 candidate is within {budget:g} pt on val by its estimate, but "
                    f"{search.val_images} val images cannot show it is over either; keeping the closest "
                    f"({search.chosen.label}) and letting the parity check judge it")
    write_json(ctx.out / int8_recipe.RECIPE_FILE, search.recipe())
    return Calibrated(method=search.method, percentile=search.percentile, nodes=search.nodes_excluded,
                      cache=search.cache_path, search=search, **fixed)
