"""The listing commands' plain tables (`ps`, `images`, `ls`, `volume ls`), left-aligned as Docker prints them."""

from __future__ import annotations


def table(rows: list[list[str]], headers: list[str]) -> str:
    from tabulate import tabulate  # lazy: table rendering, only for the listing commands

    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True)
