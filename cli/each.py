"""Commands that act on several names (`rm`, `stop`, `volume rm`, `network rm` ...): each one is done,
an error is said and does not stop the others, and the command's status says whether any failed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pydock.utils.errors import PydockError


def each(refs: tuple[str, ...], action: Callable[[str], Any], failure: str | None = None, echo: bool = True) -> None:
    """Apply `action` to every ref, printing what it returns (the ref itself for None) unless not `echo`.
    Errors go to stderr; after any, the command exits 1, with `failure` as its last line when given (as
    Docker 0.7's container commands did)."""
    failed = False
    for ref in refs:
        try:
            out = action(ref)
        except PydockError as err:
            click.echo(f"Error: {err}", err=True)
            failed = True
            continue
        if echo:
            click.echo(ref if out is None else out)
    if not failed:
        return
    if failure is None:
        click.get_current_context().exit(1)
    raise PydockError(failure)
