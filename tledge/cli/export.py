"""The `tledge export` command: its options are generated from ExportOptions (tledge/exporting/options.py); it
calls the same `tledge.export` the Python API is. No torch import here."""

from __future__ import annotations

import click

from tledge.exporting.options import ExportOptions
from tledge.options import click_options, given


@click.command()
@click.argument("source", type=click.Path(path_type=str))
@click_options(ExportOptions)
def export(source, **values):
    """Export a run folder or best.pt to ONNX / INT8 ONNX / TensorRT and check each against PyTorch.

    Each format is a step; a failed step is a failed row and the others go on. Parity is judged with 95%
    intervals on the test split (or --parity-data). Exit codes: 0 every artifact within tolerance; 2 user
    error (or a step failed on one); 3 over tolerance (the data show it; also an INT8 search that cannot
    fit); 4 inconclusive: too few parity images to tell (the message says how many would); 1 a step crashed.
    """
    from tledge.api import export_result

    result = export_result(source, **given(values, ExportOptions))
    click.echo(result.report())  # the table and the next commands: shown under -q too
    if result.failure is not None:
        raise result.failure


COMMANDS = [export]
