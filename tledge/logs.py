"""How tledge talks while it works: the library logs under the `tledge` logger (tledge.export.pipeline, …:
step progress at INFO, details at DEBUG, problems at WARNING) and configures nothing; the CLI installs
one handler (`cli_logging`) that prints plain lines, its level set by -q / -v. Python users choose with the
standard `logging` module, e.g. `logging.basicConfig(level=logging.INFO)`.

Progress bars follow the same rule (`progress_shown`): drawn only when tledge's INFO lines would be shown.
"""

from __future__ import annotations

import contextlib
import logging

import click

ROOT = "tledge"
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}


def progress_shown() -> bool:
    """Progress is INFO: a bar is drawn when tledge's INFO records are enabled (the CLI without -q, or a
    user's own logging config), never under -q or in an unconfigured script."""
    return logging.getLogger(ROOT).isEnabledFor(logging.INFO)


class LineFormatter(logging.Formatter):
    """The message alone; a problem starts with its level (`warning: …`), as the CLI's `error: …` does."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return text


class ClickHandler(logging.Handler):
    """Step lines on stdout with the command's results (the output tledge always had), problems on stderr;
    click.echo looks the streams up when called, so a redirected or captured stdout is followed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=record.levelno >= logging.WARNING)
        except Exception:  # noqa: BLE001 - logging's contract: a handler never raises
            self.handleError(record)


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO):
    """The CLI's handler on the `tledge` logger for one command, removed afterwards (so an in-process caller,
    such as a test, gets its logging back as it was)."""
    logger = logging.getLogger(ROOT)
    handler = ClickHandler()
    handler.setFormatter(LineFormatter())
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the CLI's lines once, whatever the root logger holds
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def log_note(logger: logging.Logger, note: str) -> None:
    """A one-line note a component kept for its caller (a backend's provider fallback): `warning: …` is a
    problem (WARNING), anything else a step line (INFO)."""
    if note.startswith("warning: "):
        logger.warning(note[len("warning: "):])
    else:
        logger.info(note)
