"""Name, link and port commands: `link`, `ls`, `port`."""

from __future__ import annotations

import logging
from typing import Any

import click

from pydock.utils.table import plain_table
from pydock.links.graphdb import normalize_path, split_path
from pydock.links.names import validate_name
from pydock.utils.errors import InvalidArgument, NotFound

log = logging.getLogger(__package__)

ID_WIDTH = 12


def _entity_of(rt: Any, ref: str) -> str:
    """A name path (`/db`, `/web/db`, `db`) first, then anything the runtime resolves (id prefix)."""
    try:
        found = rt.names.get(normalize_path(ref))
    except InvalidArgument:
        found = None
    if found is not None:
        return found
    if "/" in ref.strip("/"):
        raise NotFound(f"No such name: {ref}")
    return rt.get(ref).id


@click.command(context_settings={"help_option_names": ["--help"]})
@click.argument("current")
@click.argument("new")
@click.pass_context
def link(ctx: click.Context, current: str, new: str) -> None:
    """Give a container another name: `link /db /web/database` (a link from web), or rename a link path
    (`link /web/db /web/database`). A new link's env vars appear when the parent next starts."""
    rt = ctx.obj.runtime()
    new_path = normalize_path(new)
    parent, leaf = split_path(new_path)
    validate_name(leaf)
    cur_path = normalize_path(current)
    cur_parent, _ = split_path(cur_path)
    if cur_parent != "/" and cur_parent == parent and rt.names.get(cur_path) is not None:
        rt.names.rename(cur_path, new_path)  # /web/db -> /web/database
    else:
        rt.names.set(new_path, _entity_of(rt, current))
    click.echo(new_path)


def _image_label(rt: Any, image_id: str, cache: dict[str, str]) -> str:
    """`repo:tag` of the image, else its short id (as `ps` shows it)."""
    if not image_id:
        return "-"
    if image_id not in cache:
        try:
            cache[image_id] = rt.images.name_of(image_id)
        except Exception as err:  # noqa: BLE001 - a label is cosmetic: a missing image must not break ls
            log.debug("ls: no name for image %s (%s: %s): showing its short id", image_id[:ID_WIDTH],
                      type(err).__name__, err)
            cache[image_id] = image_id[:ID_WIDTH]
    return cache[image_id]


@click.command(context_settings={"help_option_names": ["--help"]})
@click.option("-a", "--all", "show_all", is_flag=True, help="Show full container ids.")
@click.pass_context
def ls(ctx: click.Context, show_all: bool) -> None:
    """List every name in the name graph (primary names and link paths) with its container and image."""
    rt = ctx.obj.runtime()
    rows = []
    images: dict[str, str] = {}
    for path, entity in sorted(rt.names.list().items()):
        try:
            container = rt.get(entity)
            image = _image_label(rt, getattr(container, "image", "") or "", images)
        except NotFound:
            image = "<missing container>"
        rows.append([path, entity if show_all else entity[:ID_WIDTH], image])
    click.echo(plain_table(rows, ["NAME", "ID", "IMAGE"]))


@click.command(context_settings={"help_option_names": ["--help"]})
@click.argument("container")
@click.argument("private_port")
@click.pass_context
def port(ctx: click.Context, container: str, private_port: str) -> None:
    """Print the host address a container's PRIVATE_PORT[/proto] is published on."""
    rt = ctx.obj.runtime()
    c = rt.get(container)
    for mapping in rt.network.port(c.id, private_port):
        click.echo(mapping.host)
