"""The `tledge` command: a click group. Thin: commands parse options and call library functions.

Each area registers its own commands (tledge/cli/train.py, tledge/cli/export.py, tledge/cli/runtime.py),
and none of those modules imports torch at import time, so `tledge predict model.onnx` works on a
machine without torch.
"""

from __future__ import annotations

import importlib
import sys

import click

from tledge import __version__
from tledge.errors import Interrupted, TledgeError, exit_code_table
from tledge.signals import sigterm_as_interrupt

COMMAND_MODULES = ("tledge.cli.train", "tledge.cli.sweep", "tledge.cli.export", "tledge.cli.runtime",
                   "tledge.cli.verify", "tledge.demo")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="\b\nExit codes (every command):\n" + exit_code_table())
@click.version_option(__version__, prog_name="tledge")
@click.option("-q", "--quiet", is_flag=True, help="Only results and problems: no step lines, no progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Also the details (DEBUG lines).")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool):
    """Image folder → fine-tuned model → ONNX / INT8 / TensorRT, verified → camera, video, folder."""
    from tledge.logs import LEVELS, cli_logging

    if quiet and verbose:
        raise TledgeError("-q/--quiet and -v/--verbose contradict each other; give one")
    ctx.with_resource(cli_logging(LEVELS["quiet" if quiet else "verbose" if verbose else "normal"]))


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area is not built yet
                continue
            raise
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line `error: …` and exit 2 (3 for a failed parity gate). SIGTERM
    is handled as Ctrl-C (tledge.signals) and exits 143."""
    with sigterm_as_interrupt() as stop:
        try:
            cli.main(args=argv, prog_name="tledge", standalone_mode=False)
        except Interrupted as exc:
            click.echo(f"interrupted{_by(stop)}: {exc}", err=True)
            return stop.exit_code or exc.exit_code
        except TledgeError as exc:
            click.echo(f"error: {exc}", err=True)
            return exc.exit_code
        except click.exceptions.Abort:  # click's name for a KeyboardInterrupt that reached it
            click.echo(f"interrupted{_by(stop)}", err=True)
            return stop.exit_code or 130
        except click.ClickException as exc:
            exc.show()
            return exc.exit_code
        except KeyboardInterrupt:
            click.echo(f"interrupted{_by(stop)}", err=True)
            return stop.exit_code or 130
        except OSError as exc:  # a write the library did not wrap: a full disk is still one line, not a traceback
            from tledge.atomic import WRITE_ERRNOS

            if exc.errno not in WRITE_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror}; {WRITE_ERRNOS[exc.errno]}", err=True)
            return 2
    return 0


def _by(stop) -> str:
    return f" by {stop.name}" if stop.signum is not None else ""


if __name__ == "__main__":
    sys.exit(main())
