"""`tledge predict`, `tledge bench`, `tledge info`: option parsing only; the work is in the library. The options
are generated from PredictRequest, BenchOptions and InfoOptions (tledge/runtime/options.py).

Nothing here imports torch: the .onnx and .engine paths must run on a machine without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from tledge.options import click_options, given
from tledge.runtime.options import BenchOptions, InfoOptions, PredictRequest


@click.command()
@click_options(PredictRequest)
def predict(**values):
    """Classify SOURCE with ARTIFACT (run folder, .pt, .onnx, .engine).

    SOURCE: camera index (0) or /dev/videoN, csi://N (Jetson CSI camera), a video file, an rtsp/http URL,
    an image, a folder (recursive) or a quoted glob ("photos/**/*.jpg").
    """
    from tledge.runtime.predict import format_summary
    from tledge.runtime.runner import check_summary, predict_summary

    request = PredictRequest(**given(values, PredictRequest))
    summary = predict_summary(request)
    click.echo(format_summary(summary))  # the result: shown under -q too
    check_summary(summary, request)


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=str))
@click_options(BenchOptions)
def bench(sources, **values):
    """Benchmark a run folder (best.pt + every export/*.onnx, *.engine) or a list of artifact files."""
    from tledge.api import bench_result
    from tledge.runtime.bench import format_bench_table, write_bench

    from tledge.runtime.bench import bench_out_dir, check_rows

    options = BenchOptions(**given(values, BenchOptions))
    out = bench_out_dir(sources, options.out, options.data)
    result = bench_result(list(sources), options)
    click.echo(format_bench_table(result))
    json_path, png = write_bench(result, out)
    click.echo(f"wrote {json_path}" + (f" and {png}" if png else " (no plot: matplotlib is not installed)"))
    check_rows(result)


@click.command()
@click_options(InfoOptions)
def info(**values):
    """Print the model card of a run folder, .pt, .onnx or .engine."""
    from tledge.runtime.info import format_card, read_card

    options = InfoOptions(**given(values, InfoOptions))
    from tledge.provenance.verdicts import read_verdicts, rows as verdict_rows

    card = read_card(options.artifact)
    verdicts = read_verdicts(options.artifact) if Path(options.artifact).is_file() else []
    if options.json:
        click.echo(json.dumps({**card.to_dict(), **({"verdicts": verdicts} if verdicts else {})}, indent=2,
                              sort_keys=True))
    else:
        click.echo(format_card(card, options.artifact))
    if verdicts and not options.json:  # where its parity was checked, one row per environment
        from tledge.table import format_table

        click.echo("parity verdicts (one per environment that computes differently):")
        click.echo(format_table(verdict_rows(options.artifact)))
    if not options.json and options.artifact.endswith(".onnx"):  # which ONNX Runtime would run it, and a fix if wrong
        from tledge.runtime.backends.ort_install import diagnose

        click.echo(diagnose().line())


COMMANDS = [predict, bench, info]
