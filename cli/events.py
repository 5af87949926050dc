"""`pydock events`: the root's events journal (runtime/events.py), past events by time and filter, then
new ones as they happen until interrupted (or until --until)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import click

from pydock.utils.errors import InvalidArgument

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_time(value: str, now_ns: int) -> int:
    """Docker's spellings: a unix time (`1700000000`, `1700000000.5`), an RFC 3339 date, or a duration
    back from now (`10m`, `1h30m`). Unix nanoseconds."""
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return int(float(value) * 10**9)
    if re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", value):
        return now_ns - sum(int(float(n) * _UNIT_NS[u]) for n, u in _DURATION.findall(value))
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"Invalid time {value!r} (use a unix time, an RFC 3339 date or a duration "
                              "like 10m)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 10**9)


@click.command()
@click.option("--since", default=None, metavar="TIME", help="Show events from this time (then new ones).")
@click.option("--until", default=None, metavar="TIME", help="Stop at this time.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="container=, image=, event=, type= (repeat a key for either value).")
@click.pass_context
def events(ctx: click.Context, since: str | None, until: str | None, filters: tuple[str, ...]) -> None:
    """Events of containers (create, start, die, kill, stop, destroy, pause, unpause, rename, exec_*),
    kept in the root so they outlive the processes that made them."""
    from pydock.runtime import events as journal  # lazy: only this command

    now = time.time_ns()
    since_ns = parse_time(since, now) if since else None
    until_ns = parse_time(until, now) if until else None
    wanted = journal.parse_filters(filters)
    root = ctx.obj.runtime().layout.root
    past, offset = journal.read(root, since_ns, until_ns, wanted)
    if since_ns is not None:
        for e in past:
            click.echo(journal.format_line(e))
    if until_ns is not None and until_ns <= time.time_ns():
        return
    try:
        for e in journal.follow(root, offset, wanted, until_ns):
            click.echo(journal.format_line(e))
    except KeyboardInterrupt:
        return
