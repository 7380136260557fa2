"""The `tledge verify` command: options generated from VerifyOptions; the work is tledge.verification.verify.
No torch import (it runs with the runtime-only install)."""

from __future__ import annotations

import click

from tledge.options import click_options, given
from tledge.verification.verify import VerifyOptions


@click.command()
@click_options(VerifyOptions)
def verify(**values):
    """Re-check an exported ARTIFACT (or every artifact of an export folder) on this device against the parity
    pack exported beside it.

    Same statistics and exit codes as export's parity: 0 within budget, 3 over, 4 inconclusive (too few
    images to tell), 2 a user error (no pack, damaged pack, wrong artifact). The verdict and this machine's
    environment are added to ARTIFACT.verdicts.json (`tledge info ARTIFACT` lists them).
    """
    from tledge.verification.verify import format_verify, raise_worst, verify as run

    results = run(**given(values, VerifyOptions))
    for result in results if isinstance(results, list) else [results]:
        click.echo(format_verify(result))  # the verdicts: shown under -q too
    raise_worst(results)


COMMANDS = [verify]
