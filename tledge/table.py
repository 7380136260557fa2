"""Plain-text tables for the terminal and Markdown tables for reports: one formatter for every command."""

from __future__ import annotations

from typing import Any, Sequence


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".4g",
                 markdown: bool = False) -> str:
    """Rows of dicts → aligned text (or a Markdown table). Missing values print as '-'."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(col), floatfmt) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]

    def line(values):
        parts = [v.ljust(w) for v, w in zip(values, widths)]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    rule = ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown else "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(r) for r in cells)])
