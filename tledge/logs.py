"""How tledge talks while it works: the library logs under the `tledge` logger (tledge.exporting.pipeline, …:
step progress at INFO, details at DEBUG, problems at WARNING, and a long job's closing table at RESULT,
between INFO and WARNING) and configures nothing; the CLI installs one handler (`cli_logging`) that prints
plain lines, its level set by -q (RESULT: results and problems) / -v (DEBUG). Python users choose with the
standard `logging` module, e.g. `logging.basicConfig(level=logging.INFO)`; they get results as return values.

Progress bars follow the same rule (`progress_shown`): drawn only when tledge's INFO lines would be shown.
"""

from __future__ import annotations

import contextlib
import logging

ROOT = "tledge"
RESULT = 25  # a job's closing table (train's summary, eval's metrics, a sweep's results): shown under -q
logging.addLevelName(RESULT, "RESULT")
LEVELS = {"quiet": RESULT, "normal": logging.INFO, "verbose": logging.DEBUG}


def progress_shown() -> bool:
    """Progress is INFO: a bar is drawn when tledge's INFO records are enabled (the CLI without -q, or a
    user's own logging config), never under -q or in an unconfigured script."""
    return logging.getLogger(ROOT).isEnabledFor(logging.INFO)


class LineFormatter(logging.Formatter):
    """The message alone; a problem starts with its level (`warning: …`), as the CLI's `error: …` does."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            body = text.lstrip("\n")  # a message that starts with a blank line keeps it above the prefix
            text = f"{text[:len(text) - len(body)]}{record.levelname.lower()}: {body}"
        return text


class ClickHandler(logging.Handler):
    """Step lines and results on stdout (the output tledge always had), problems on stderr;
    click.echo looks the streams up when called, so a redirected or captured stdout is followed."""

    def emit(self, record: logging.LogRecord) -> None:
        import click  # the CLI's: library modules that log need not import it

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


def log_result(logger: logging.Logger, text: str) -> None:
    """A result the CLI shows even under -q (RESULT level)."""
    logger.log(RESULT, text)


def log_note(logger: logging.Logger, note: str, about: str = "") -> None:
    """A one-line note a component kept for its caller (a backend's provider fallback): `warning: …` is a
    problem (WARNING), anything else a step line (INFO); `about` (an artifact's name) goes in front."""
    lead = f"{about}: " if about else ""
    if note.startswith("warning: "):
        logger.warning(lead + note[len("warning: "):])
    else:
        logger.info(lead + note)


@contextlib.contextmanager
def captured(level: int = logging.INFO, on_line=None):
    """tledge's log lines of a block as a list of messages (each also passed to `on_line` as it comes): for
    a script that keeps a job's log with its numbers (benchmarks/). The caller's logging config stays."""
    lines: list[str] = []
    logger = logging.getLogger(ROOT)

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            if on_line is not None:
                on_line(lines[-1])

    handler, saved = _Collect(level), logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(level):
        logger.setLevel(level)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
