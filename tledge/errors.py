"""User-facing errors: the CLI prints `error: <message>` and exits with `exit_code`, no traceback."""


class TledgeError(ValueError):
    """A mistake the user can fix (bad path, bad option, missing file). Exit code 2."""

    exit_code = 2


class UnknownBackbone(TledgeError):
    """An architecture name that is not in the registry."""


class ExportOptionError(TledgeError):
    """An export option that the chosen format does not support."""


class ParityError(TledgeError):
    """An artifact whose answers differ from PyTorch's by more than the tolerance. Exit code 3."""

    exit_code = 3


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
