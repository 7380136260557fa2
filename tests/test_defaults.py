"""Defaults once (issue #23): every option's default lives in its options object. A field whose default is None
means "not given" (no file written, the search decides, ...); it must not name a default in its help (that
default would live in the code that reads it). Where the value is derived from other things when unset, the help
says "unset: ..." and the options class derives it (ExportOptions.out_dir, TrainConfig.loader_workers). No code
outside the options modules substitutes a default for an option's value (`o.opset or 17`,
`DEFAULT if config.workers is None else config.workers`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tledge.cli.option_tables import JOBS, options_class
from tledge.options import options_of

PACKAGE = Path(__file__).resolve().parents[1] / "tledge"
CLASSES = {job: options_class(job) for job in JOBS}
OPTION_MODULES = {Path(__import__(c.__module__, fromlist=["_"]).__file__).resolve() for c in CLASSES.values()}
FIELDS = {o.name for cls in CLASSES.values() for o in options_of(cls)}
# A number, or one of the option's own choices, named as "the default" in its help.
DEFAULT_WORDS = re.compile(r"default:?\s+([0-9][0-9.e-]*|[a-z][a-z0-9-]*)\b", re.I)


def _named_default(opt) -> str | None:
    for value in DEFAULT_WORDS.findall(opt.spec.help or ""):
        if value[0].isdigit() or value in (opt.spec.choices or ()):
            return value
    return None


def test_a_field_that_defaults_to_none_names_no_other_default():
    hidden = [f"{job}.{o.name}: help says default {_named_default(o)}"
              for job, cls in CLASSES.items() for o in options_of(cls)
              if o.default is None and _named_default(o) is not None]
    assert hidden == []


OPTION_OBJECTS = {"o", "opts", "options", "config", "request", "cfg"}  # how the code names an options object


def _option_attribute(node) -> str | None:
    """`o.opset`, `ctx.options.opset`, `session.config.workers`: the option's name; other attributes: None."""
    if not (isinstance(node, ast.Attribute) and node.attr in FIELDS):
        return None
    base = node.value
    name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
    return node.attr if name in OPTION_OBJECTS else None


def _same_attribute(a, b) -> bool:
    return isinstance(a, ast.Attribute) and isinstance(b, ast.Attribute) and ast.dump(a) == ast.dump(b)


def _substitutions(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.IfExp) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1 \
                and isinstance(node.test.ops[0], (ast.Is, ast.IsNot)) \
                and isinstance(node.test.comparators[0], ast.Constant) and node.test.comparators[0].value is None:
            name = _option_attribute(node.test.left)
            given, fallback = (node.orelse, node.body) if isinstance(node.test.ops[0], ast.Is) else (node.body,
                                                                                                      node.orelse)
            if name and _same_attribute(given, node.test.left) \
                    and not (isinstance(fallback, ast.Constant) and fallback.value is None):
                found.append((node.lineno, name))
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and len(node.values) == 2:
            name = _option_attribute(node.values[0])
            if name and isinstance(node.values[1], ast.Constant) and node.values[1].value not in (None, (), ""):
                found.append((node.lineno, name))
    return found


def test_no_code_outside_the_options_substitutes_a_default():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.resolve() in OPTION_MODULES:
            continue
        for line, name in _substitutions(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({name})")
    assert offenders == []


def test_the_substitution_finder_finds_them():
    code = ("a = o.opset or 17\nb = 17 if o.opset is None else o.opset\n"
            "c = ctx.options.opset if ctx.options.opset is not None else 17\n"
            "d = o.out or None\ne = None if o.out is None else str(o.out)\nf = backend.max_batch or 1\n")
    assert [name for _, name in _substitutions(ast.parse(code))] == ["opset", "opset", "opset"]


def test_export_defaults_are_the_values_the_export_uses():
    from tledge.exporting.options import ExportOptions

    o = ExportOptions()
    assert (o.opset, o.calib_images, o.int8_max_groups, o.qat_lr, o.input, o.output, o.int8_flavours) == \
        (17, 512, 8, 1e-5, "float", "logits", "cpu")
    assert o.changed() == {} and ExportOptions(opset=18).changed() == {"opset": 18}
