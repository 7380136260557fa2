"""The `tledge export` command: parses options and calls `tledge.export.pipeline.export_run`. No torch import here."""

from __future__ import annotations

import click

from tledge.export.formats import FORMATS

CALIB_METHODS = ("minmax", "entropy", "percentile")


@click.command()
@click.argument("source", type=click.Path(path_type=str))
@click.option("--formats", default=None,
              help=f"Comma-separated: {', '.join(FORMATS)}. Default: onnx,int8 (+ trt-fp16 where a GPU and TensorRT are).")
@click.option("--opset", type=int, default=None,
              help="ONNX opset (default 17: accepted by TensorRT 8.5 to 11; 18+ uses the dynamo exporter).")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default=None,
              help="Force a PyTorch ONNX exporter (default: torchscript for opset ≤ 17, dynamo for 18+).")
@click.option("--batch", type=int, default=None,
              help="ONNX: fix the batch size (default dynamic). TensorRT: the batch the engine is tuned for "
                   "(the ONNX then stays dynamic).")
@click.option("--max-batch", type=int, default=None, help="TensorRT: largest batch of the optimization profile (default 16).")
@click.option("--workspace", type=int, default=None, help="TensorRT: builder workspace limit in MiB (Jetsons: 512-2048).")
@click.option("--calib-data", type=click.Path(path_type=str), default=None,
              help="INT8: folder of real images to calibrate on (recursive); default: the run's train split.")
@click.option("--calib-images", type=int, default=None, help="INT8: how many calibration images (default 512, minimum 32).")
@click.option("--calib-method", type=click.Choice(CALIB_METHODS), default=None, help="INT8 calibration (default minmax).")
@click.option("--calib-percentile", type=float, default=None, help="INT8: percentile for --calib-method percentile (default 99.999).")
@click.option("--int8-flavours", type=click.Choice(["cpu", "both"]), default=None,
              help="cpu: model.int8.onnx (U8S8, fast on CPU); both: also the symmetric S8S8 model.int8.trt.onnx "
                   "(always written with trt-int8).")
@click.option("--exclude-nodes", default=None, help="INT8: comma-separated ONNX node names to keep in float.")
@click.option("--parity-data", type=click.Path(path_type=str), default=None,
              help="Labelled folder (one subfolder per class) for the parity check; default: the run's test split.")
@click.option("--tolerance", default=None,
              help="Override parity gates: KIND=VALUE or KIND.METRIC=VALUE, comma-separated; kinds onnx, fp16, int8; "
                   "metrics agreement (%), acc_drop (pt), rel_diff. E.g. int8=2.0,onnx=1e-3")
@click.option("--no-parity", is_flag=True, help="Skip the parity check.")
@click.option("--int8-search", type=click.Choice(["budget", "full", "off"]), default=None,
              help="INT8 accuracy search on the run's val split. budget (default when the run has a val split): "
                   "candidates cheapest first, stop at the first within the budget; full: every candidate, then the "
                   "most agreeing one; off: plain --calib-method. Fixing --calib-method/--exclude-nodes/--int8-recipe "
                   "means off.")
@click.option("--int8-budget", type=float, default=None,
              help="INT8 search: accuracy drop allowed vs FP32 on val, in points (default: the int8 parity tolerance, "
                   "1.0); if no calibration fits, the most sensitive layers are kept in float (exit 3 if the val data "
                   "show it cannot fit).")
@click.option("--int8-methods", default=None,
              help="INT8 search candidates, tried in this order, e.g. minmax,percentile:99.99,entropy "
                   "(default minmax, percentile 99.9/99.99/99.999, entropy: cheapest first).")
@click.option("--int8-max-groups", type=int, default=None,
              help="INT8 search: at most this many layer groups kept in float (default 8).")
@click.option("--int8-recipe", type=click.Path(path_type=str), default=None,
              help="INT8: reuse a search's decisions without searching: RUN/export/int8_recipe.json, or an INT8 ONNX "
                   "written by tledge (its card holds the recipe).")
@click.option("--report", "int8_report", type=click.Path(path_type=str), default=None,
              help="INT8: Markdown report of the search and final parity (default RUN/export/int8_report.md when "
                   "searching or fine-tuning).")
@click.option("--qat-epochs", type=int, default=None,
              help="INT8: quantization-aware fine-tuning on the train split for N epochs before quantizing.")
@click.option("--qat-lr", type=float, default=None,
              help="INT8: learning rate of --qat-epochs (default 1e-4, cosine to 0, SGD momentum 0.9; activation "
                   "ranges frozen after the first epoch).")
@click.option("--out", type=click.Path(path_type=str), default=None, help="Output folder (default RUN/export).")
def export(source, formats, opset, exporter, batch, max_batch, workspace, calib_data, calib_images, calib_method,
           calib_percentile, int8_flavours, exclude_nodes, parity_data, tolerance, no_parity, int8_search,
           int8_budget, int8_methods, int8_max_groups, int8_recipe, int8_report, qat_epochs, qat_lr, out):
    """Export a run folder or best.pt to ONNX / INT8 ONNX / TensorRT and check each against PyTorch.

    Parity is judged with 95% intervals on the test split (or --parity-data). Exit codes: 0 every artifact
    within tolerance; 2 user error; 3 over tolerance (the data show it; also an INT8 search that cannot
    fit); 4 inconclusive: too few parity images to tell (the message says how many would).
    """
    from tledge.export.pipeline import export_run

    nodes = [n.strip() for n in exclude_nodes.split(",") if n.strip()] if exclude_nodes else None
    export_run(source, formats, out, opset=opset, exporter=exporter, batch=batch, max_batch=max_batch,
               workspace=workspace, calib_data=calib_data, calib_images=calib_images, calib_method=calib_method,
               calib_percentile=calib_percentile, int8_flavours=int8_flavours, nodes_to_exclude=nodes,
               parity_data=parity_data, tolerance=tolerance, parity=not no_parity, int8_budget=int8_budget,
               int8_methods=int8_methods, int8_recipe=int8_recipe, int8_report=int8_report,
               int8_max_groups=int8_max_groups, int8_search=int8_search, qat_epochs=qat_epochs, qat_lr=qat_lr,
               echo=click.echo)


COMMANDS = [export]
