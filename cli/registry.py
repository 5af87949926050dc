"""Images from and to the ecosystem: save, load (archives); pull, push, login, logout (registries)."""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO

import click

from pydock.utils.errors import InvalidArgument, NotFound


def _store(ctx: click.Context) -> Any:
    return ctx.obj.runtime().images


@click.command()
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["docker", "oci"]), default="docker", show_default=True,
              help="docker: docker save's archive (an OCI layout with manifest.json); oci: the OCI layout alone.")
@click.argument("refs", metavar="IMAGE...", nargs=-1, required=True)
@click.pass_context
def save(ctx: click.Context, output: str | None, fmt: str, refs: tuple[str, ...]) -> None:
    """Save images (with their layers and tags) to a tar archive."""
    from pydock.graph.archives import save as save_archive  # lazy: archive writing, only for save

    store = _store(ctx)
    for ref in refs:
        store.get(ref)  # every name checked before anything is written
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to write an archive to a terminal: use -o FILE or redirect")
        save_archive(store, list(refs), sys.stdout.buffer, fmt)
        sys.stdout.buffer.flush()
        return
    tmp = f"{output}.pydock-partial-{os.getpid()}"
    try:
        with open(tmp, "xb") as f:
            save_archive(store, list(refs), f, fmt)  # type: ignore[arg-type]
        os.rename(tmp, output)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@click.command()
@click.option("-i", "--input", "input_", metavar="FILE", help="Read from FILE instead of stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def load(ctx: click.Context, input_: str | None, quiet: bool) -> None:
    """Load images from a tar archive (docker save, podman save, OCI layout; gzip/bzip2/xz or plain)."""
    from pydock.graph.archives import load as load_archive  # lazy: archive reading, only for load

    store = _store(ctx)
    if input_ is None:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is a terminal: use -i FILE or redirect")
        lines = load_archive(store, click.get_binary_stream("stdin"))
    else:
        try:
            f: BinaryIO = open(input_, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound(f"{input_}: no such file") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{input_} is a directory, not an archive") from None
        with f:
            lines = load_archive(store, f)
    if not quiet:
        for line in lines:
            click.echo(line)
