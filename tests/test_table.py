"""utils.table.plain_table prints exactly what tabulate's "plain" format prints (ps and images used it)."""

from __future__ import annotations

import random
import string

from tabulate import tabulate

from pydock.utils.table import plain_table


def _tabulate(rows: list[list[str]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True)


def test_random_tables_match_tabulate() -> None:
    rng = random.Random(17)
    alphabet = string.ascii_letters + string.digits + " ,:/->\"()"
    for _ in range(500):
        ncol = rng.randint(1, 8)
        headers = [rng.choice(["CONTAINER ID", "IMAGE", "NAMES", "X", "VIRTUAL SIZE"]) for _ in range(ncol)]
        rows = [["".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 3, 12, 30]))) for _ in range(ncol)]
                for _ in range(rng.randint(0, 6))]
        assert plain_table(rows, headers) == _tabulate(rows, headers)


def test_multiline_and_wide_cells_are_laid_out_as_tabulate_does() -> None:
    rows = [["abc", '"sh -c echo a\nb"', "x"], ["d", "é", "日本語"]]
    headers = ["A", "COMMAND", "NAMES"]
    assert plain_table(rows, headers) == _tabulate(rows, headers)


def test_an_empty_listing_is_its_header_line() -> None:
    assert plain_table([], ["CONTAINER ID", "IMAGE"]) == "CONTAINER ID    IMAGE"
