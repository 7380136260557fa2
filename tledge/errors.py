"""User-facing errors: the CLI prints `error: <message>` and exits with `exit_code`, no traceback.

One exit-code table for every verb (README and `tledge --help` show it): 1 is left to bugs only.
"""

EXIT_CODES = {
    0: "ok",
    2: "user error: bad option, path or input (one line `error: ...`); also a write the machine refused (disk full, "
       "I/O error, name too long): the message names the file and what was kept",
    3: "export, verify: the data show an artifact over its parity gate, or the INT8 budget out of reach",
    4: "export, verify: parity inconclusive, too few images to tell (the message says how many would)",
    130: "interrupted (Ctrl-C); what ran is saved (train: resume with --resume)",
    143: "stopped by SIGTERM (docker stop, systemd, kill): the same clean-up, summary and resume hint as Ctrl-C",
    1: "a bug in tledge (a traceback): please report it; export: a step crashed (the others ran); sweep: a "
       "cell failed (the rest ran, results written)",
}


def exit_code_table() -> str:
    """The exit codes as indented lines, for `--help` and the README."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())


class TledgeError(ValueError):
    """A mistake the user can fix (bad path, bad option, missing file). Exit code 2."""

    exit_code = 2


class UnknownBackbone(TledgeError):
    """An architecture name that is not in the registry."""


class ExportOptionError(TledgeError):
    """An export option that the chosen format does not support."""


class ParityError(TledgeError):
    """An artifact the data show to be outside its tolerance (or an INT8 search that cannot fit). Exit code 3."""

    exit_code = 3


class Interrupted(TledgeError):
    """Ctrl-C after the partial results were written. Exit code 130."""

    exit_code = 130


class ParityInconclusive(TledgeError):
    """Too few parity images to tell whether an artifact keeps its budget (the message says how many). Exit 4."""

    exit_code = 4


class WriteError(TledgeError):
    """A file that could not be written (disk full, I/O error, name too long, read-only): what was kept is in the
    message. Exit code 2."""


class MissingDependency(TledgeError):
    """An optional package (torch, tensorrt, onnxruntime-gpu...) that this command needs."""


def require(module: str, extra: str, why: str):
    """Import an optional dependency or raise a one-line error that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{why} needs the '{module}' package ({exc}); install it with: pip install 'tledge[{extra}]'"
        ) from None
