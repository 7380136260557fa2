"""Options defined once: a job's options are dataclass fields whose metadata holds the help, range and CLI
spelling. The click options, the up-front range checks and the option tables of docs/reference.md are all generated from
those fields, so a name, default or range cannot drift between the CLI, the Python API and sweep grids.

    @dataclass
    class BenchOptions:
        iters: int = option(50, "Timed calls per row (at least).", min=1)

    validate(BenchOptions(iters=0))      # TledgeError: --iters 0: must be at least 1
    @click_options(BenchOptions)         # adds --iters to a click command

No torch here: the CLI imports this module on machines without it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from tledge.errors import TledgeError

META_KEY = "tledge.option"


@dataclass(frozen=True)
class OptionSpec:
    """How one option is checked and spelled. `min`/`max` are inclusive unless `above`/`below` are used."""

    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    above: float | None = None  # strictly greater than
    below: float | None = None  # strictly less than
    flag: str | None = None  # CLI spelling; default --field-name
    negate: bool = False  # a bool that defaults to True, turned off by `flag` (e.g. --no-amp)
    argument: bool = False  # a positional CLI argument
    cli: bool = True  # False: Python/config-file only
    parse: Callable[[str], Any] | None = None  # CLI text → value (comma lists, tuples)
    show: str | None = None  # default as shown in help and docs/reference.md, when str(default) is not it
    metavar: str | None = None
    check: Callable[[Any], str | None] | None = None  # a rule ranges cannot say: value → problem text or None


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
           **spec: Any) -> Any:
    """A dataclass field that carries its OptionSpec (see module doc)."""
    metadata = {META_KEY: OptionSpec(help=help, **spec)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def reuse(cls: type, name: str, default: Any = dataclasses.MISSING, **spelling: Any) -> Any:
    """A field declared by another job's options class, with that field's OptionSpec (help, range, checks):
    one definition for two commands (eval's --device is train's). A job may give its own `default` (the
    shown default then follows it) and CLI spelling (`flag=`, `metavar=`), nothing else."""
    if set(spelling) - {"flag", "metavar"}:
        raise TypeError(f"reuse() changes only the default, flag and metavar, not {sorted(spelling)}")
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    spec = source.metadata[META_KEY]
    if default is not dataclasses.MISSING:
        if spec.show is not None:  # it described the source's default
            spelling["show"] = None
    elif source.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = source.default_factory()  # type: ignore[misc]
    else:
        default = source.default
    if any(getattr(spec, key) != value for key, value in spelling.items()):
        spec = dataclasses.replace(spec, **spelling)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={META_KEY: spec})
    return dataclasses.field(default=default, metadata={META_KEY: spec})


@dataclass(frozen=True)
class Option:
    """One field of an options class with its spec and resolved type."""

    name: str
    type: Any
    default: Any
    spec: OptionSpec

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def base_type(self) -> Any:
        """`int | None` → int; `float` → float; anything else as is."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        if typing.get_origin(self.type) in (typing.Union, types.UnionType) and len(args) == 1:
            return args[0]
        return self.type

    @property
    def shown_default(self) -> str:
        """The default as help and docs/reference.md show it (`show`, when the value alone does not say it)."""
        return self.spec.show if self.spec.show is not None else self.default_text

    @property
    def default_text(self) -> str:
        """The default as CLI text ("" for none, and for flags)."""
        if self.default is dataclasses.MISSING or self.default is None:
            return ""
        if isinstance(self.default, bool):
            return ""
        if isinstance(self.default, (tuple, list)):
            return ",".join(str(v) for v in self.default)
        return str(self.default)


def options_of(cls: type) -> list[Option]:
    """The option fields of a dataclass, in declaration order (fields without a spec are internal)."""
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(META_KEY)
        if spec is None:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        result.append(Option(f.name, hints[f.name], default, spec))
    return result


def _range_problem(opt: Option, value: Any) -> str | None:
    spec = opt.spec
    if spec.choices is not None and value not in spec.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in spec.choices], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"must be one of {', '.join(map(str, spec.choices))}{hint}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if spec.min is not None and value < spec.min:
        return f"must be at least {spec.min:g}"
    if spec.max is not None and value > spec.max:
        return f"must be at most {spec.max:g}"
    if spec.above is not None and not value > spec.above:
        return f"must be greater than {spec.above:g}"
    if spec.below is not None and not value < spec.below:
        return f"must be less than {spec.below:g}"
    return None


def _type_problem(opt: Option, value: Any) -> str | None:
    kind = opt.base_type
    if value is None:
        return None if kind is not opt.type or opt.default is None else "must be given"
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number (not inf or nan)"
    if kind is str:
        return None if isinstance(value, str) else "must be text"
    return None


def describe(opt: Option, value: Any) -> str:
    if isinstance(value, (tuple, list)):  # comma lists, as they are typed
        return f"{opt.flag} {','.join(str(v) for v in value)}"
    return f"{opt.flag} {value!r}" if isinstance(value, str) else f"{opt.flag} {value}"


def validate(options: Any) -> None:
    """Check every option's type, choices and range; the first problem is a one-line TledgeError that names
    the option (as the CLI spells it), the value and what it must be."""
    for opt in options_of(type(options)):
        value = getattr(options, opt.name)
        problem = _type_problem(opt, value) or (None if value is None else _range_problem(opt, value))
        if not problem and value is not None and opt.spec.check is not None:
            problem = opt.spec.check(value)
        if problem:
            raise TledgeError(f"{describe(opt, value)}: {problem}")


def build(cls: type, values: dict[str, Any], what: str = "option") -> Any:
    """cls(**values) with unknown names as a TledgeError that lists close matches (for API keyword typos)."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names)}"
            raise TledgeError(f"unknown {what} {key!r}{hint}")
    return cls(**values)


# ------------------------------------------------------------------------------------------------ click
def click_options(cls: type, *, skip: Iterable[str] = ()) -> Callable:
    """Decorator: one click option (or argument) per option field of `cls`, in declaration order. The
    command receives the fields by name, already parsed (see `OptionSpec.parse`)."""
    import click

    skip = set(skip)
    params = []
    for opt in options_of(cls):
        if not opt.spec.cli or opt.name in skip:
            continue
        params.append(_click_param(click, opt))

    def decorate(command: Callable) -> Callable:
        for param in reversed(params):
            command = param(command)
            command.__click_params__[-1].from_options_object = True  # checked by tests/test_options.py
        return command

    return decorate


def _click_param(click, opt: Option):
    spec = opt.spec
    if spec.argument:
        required = opt.default is dataclasses.MISSING
        return click.argument(opt.name, required=required, type=str, callback=_parser(opt))
    kind = opt.base_type
    if kind is bool:
        if spec.negate:  # stored True by default; the flag turns it off
            return click.option(opt.flag, opt.name, flag_value=False, default=True, help=spec.help)
        return click.option(opt.flag, opt.name, is_flag=True, default=False, help=spec.help)
    if spec.choices is not None and spec.parse is None:
        click_type: Any = click.Choice([str(c) for c in spec.choices])
    elif kind in (int, float) and spec.parse is None:
        click_type = kind
    else:
        click_type = str
    default = opt.default if opt.default is not dataclasses.MISSING else None
    if spec.parse is not None or not isinstance(default, (str, int, float, type(None))):
        default = None if opt.default_text == "" else opt.default_text
    help_text = spec.help
    shown = opt.shown_default
    if shown and "default" not in help_text.lower():
        help_text = f"{help_text} [default: {shown}]".strip()
    return click.option(opt.flag, opt.name, type=click_type, default=default, help=help_text,
                        metavar=spec.metavar, callback=_parser(opt))


def _parser(opt: Option) -> Callable:
    def parse(_ctx, _param, value):
        if value is None or opt.spec.parse is None:
            return value
        try:
            return opt.spec.parse(value)
        except TledgeError as exc:
            raise TledgeError(f"{opt.flag} {value!r}: {exc}") from None
        except (TypeError, ValueError):
            raise TledgeError(f"{opt.flag} {value!r}: cannot read this value") from None

    return parse


def given(values: dict[str, Any], cls: type) -> dict[str, Any]:
    """The CLI values that differ from the field default: what `cls(**given)` needs."""
    defaults = {o.name: o.default for o in options_of(cls)}
    return {k: v for k, v in values.items() if k in defaults and v is not None and not _same(v, defaults[k])}


def default_of(cls: type, name: str) -> Any:
    """The default of option `name` of options class `cls` (for a function that takes the option directly)."""
    return next(o.default for o in options_of(cls) if o.name == name)


def changed(options: Any) -> dict[str, Any]:
    """The fields of an options object whose value differs from the field's default (what the user gave)."""
    return {o.name: getattr(options, o.name) for o in options_of(type(options))
            if not _same(getattr(options, o.name), o.default)}


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - arrays and the like: treat as different
        return False


# ------------------------------------------------------------------------------------- docs/reference.md
def markdown_table(cls: type, *, skip: Iterable[str] = ()) -> str:
    """docs/reference.md's option table of one job: option | default | range | meaning."""
    skip = set(skip)
    lines = ["| option | default | values | meaning |", "|---|---|---|---|"]
    for opt in options_of(cls):
        if not opt.spec.cli or opt.name in skip or opt.spec.argument:
            continue
        lines.append(f"| `{opt.flag}` | {opt.shown_default} | {value_range(opt)} | {opt.spec.help.replace('|', '/')} |")
    return "\n".join(lines)


def value_range(opt: Option) -> str:
    """The values an option takes, in words: `a, b`, `≥ 1`, `0 ≤ x < 1`, `flag`."""
    spec = opt.spec
    if opt.base_type is bool:
        return "flag"
    if spec.choices is not None:
        return ", ".join(str(c) for c in spec.choices)
    low = f"{spec.min:g} ≤ " if spec.min is not None else (f"{spec.above:g} < " if spec.above is not None else "")
    high = f" ≤ {spec.max:g}" if spec.max is not None else (f" < {spec.below:g}" if spec.below is not None else "")
    if low and not high:
        return f"≥ {spec.min:g}" if spec.min is not None else f"> {spec.above:g}"
    if high and not low:
        return f"≤ {spec.max:g}" if spec.max is not None else f"< {spec.below:g}"
    return f"{low}x{high}" if low else ""
