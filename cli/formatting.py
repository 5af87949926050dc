"""`--format` for the listing and inspect commands: a Go template per item (utils/gotemplate.py), or
`table TEMPLATE` for aligned columns under a header, as the docker CLI prints them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import click


def format_option(short: bool) -> Any:
    """`--format TEMPLATE` (with `-f` where Docker has it: inspect; ps and images use -f for filters)."""
    flags = ("-f", "--format") if short else ("--format",)
    return click.option(*flags, "fmt", default=None, metavar="TEMPLATE",
                        help="Print each item with a Go template ('table TEMPLATE' for columns under a header).")


def go_time(when: datetime) -> str:
    """A time as Go's default String() prints it, which Docker's CreatedAt columns use."""
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def print_items(fmt: str, items: Iterable[Mapping[str, Any]], headers: Mapping[str, str]) -> None:
    """Each item through `fmt`, one per line; `table ...` aligns the columns (tabs in the template mark
    them) under the header the same template makes of `headers`. `\\t` and `\\n` typed literally in the
    template are a tab and a newline, as in the docker CLI."""
    from pydock.utils.gotemplate import Template, tabwrite  # lazy: the template engine, only with --format

    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table"):].strip()
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    template = Template(fmt)
    lines = [template.render(item) for item in items]
    if table:
        click.echo(tabwrite([template.render(headers), *lines]))
    else:
        for line in lines:
            click.echo(line)


def print_each(fmt: str, items: Iterable[Any]) -> None:
    """`inspect -f`: the template run over each item's JSON, one per line (no escapes, no table)."""
    from pydock.utils.gotemplate import Template  # lazy: see print_items

    template = Template(fmt)
    for item in items:
        click.echo(template.render(item))
