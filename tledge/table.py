"""Tables for the terminal and Markdown tables for reports, drawn by `tabulate`: one call site for every
command, with tledge's conventions (missing values as "-", `floatfmt` for floats, numbers right-aligned
only in all-number columns, text never reparsed as numbers: "0.10" or "007" stay as written)."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

from tabulate import tabulate


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy's numbers too


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".4g",
                 markdown: bool = False) -> str:
    """Rows of dicts → aligned text (or a GitHub Markdown table); "" for no rows."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    values = [[row.get(col) for col in columns] for row in rows]
    text_columns = [i for i in range(len(columns)) if not all(_is_number(r[i]) for r in values if r[i] is not None)]
    for r in values:  # a text column shows its floats as the number columns do, then is left as text
        for i in text_columns:
            if r[i] is not None:
                r[i] = format(r[i], floatfmt) if isinstance(r[i], float) else str(r[i])
    return tabulate(values, headers=columns, tablefmt="github" if markdown else "simple", floatfmt=floatfmt,
                    missingval="-", disable_numparse=text_columns or False)
