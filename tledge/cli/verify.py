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
    from tledge.verification.verify import verify as run

    run(echo=click.echo, raise_on_failure=True, **given(values, VerifyOptions))


COMMANDS = [verify]
