"""Text tables for the CLI (the JSON views live in clawgate.views)."""

from __future__ import annotations


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain text table, columns as wide as their widest cell."""
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    return "\n".join(lines)


def dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)
