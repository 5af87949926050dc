"""The listings' plain table (`ps`, `images`): left-aligned columns two spaces apart, as tabulate's "plain"
format prints them, computed directly: tabulate costs ~80 ms for the 1000 rows of `ps -a` (and its import
more), where this is a join per row."""

from __future__ import annotations

from collections.abc import Sequence

#: tabulate's header padding: a column is at least its header plus two.
_HEADER_PAD = 2


def plain_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """`rows` under `headers`, each column as wide as its widest cell (or header + 2), lines right-stripped.

    Cells are stripped like tabulate's; a cell with a line break or non-ASCII text (whose width needs
    tabulate's multi-line and wide-character rules) makes the whole table go through tabulate."""
    cells = [[str(c).strip() for c in row] for row in rows]
    text = "\0".join(["\0".join(row) for row in cells])  # every cell, checked in one pass each
    if not text.isascii() or "\n" in text or "\r" in text or \
            any(not h.isascii() or "\n" in h for h in headers):
        from tabulate import tabulate  # lazy: only for tables with multi-line or wide cells

        return tabulate(rows, headers=list(headers), tablefmt="plain", disable_numparse=True)
    widths = [len(h) + _HEADER_PAD for h in headers]
    if any(len(row) != len(widths) for row in cells):  # a short row: its missing cells are empty
        cells = [row + [""] * (len(widths) - len(row)) for row in cells]
    for i, column in enumerate(zip(*cells)):
        widths[i] = max(widths[i], *map(len, column))
    line = "  ".join(f"%-{w}s" for w in widths)  # each cell left-aligned in its width, as str.ljust
    lines = [(line % tuple(headers)).rstrip()]
    lines.extend([(line % tuple(row)).rstrip() for row in cells])
    return "\n".join(lines)
