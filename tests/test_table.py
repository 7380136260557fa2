"""format_table: tabulate with tledge's conventions, checked on exact text."""

from __future__ import annotations

import numpy as np

from tledge.table import format_table

ROWS = [{"model": "a", "ms": 0.123456, "acc": None, "n": np.int64(3), "note": "0.10"},
        {"model": "bbbb", "ms": 12.5, "acc": "x", "n": 10, "note": 0.5}]


def test_terminal_table():
    assert format_table(ROWS).splitlines() == [
        "model         ms  acc      n  note",
        "-------  -------  -----  ---  ------",
        "a         0.1235  -        3  0.10",
        "bbbb     12.5     x       10  0.5",
    ]


def test_markdown_table_columns_and_float_format():
    assert format_table(ROWS, ["model", "ms", "missing"], floatfmt=".2f", markdown=True).splitlines() == [
        "| model   |    ms | missing   |",
        "|---------|-------|-----------|",
        "| a       |  0.12 | -         |",
        "| bbbb    | 12.50 | -         |",
    ]
    assert format_table([]) == ""
