"""`pydock network create|ls|inspect|rm|connect|disconnect|prune`: user-defined bridge networks, as
`docker network` shows them (bridge, host and none listed beside them)."""

from __future__ import annotations

import json

import click

from pydock.cli.each import each
from pydock.runtime import netattach
from pydock.runtime.netview import matching, network_json
from pydock.runtime.options import parse_labels
from pydock.utils.errors import InvalidArgument, PydockError
from pydock.utils.table import plain_table


@click.group(context_settings={"help_option_names": ["--help"]})
def network() -> None:
    """Manage networks."""


@network.command()
@click.argument("name")
@click.option("-d", "--driver", default="bridge", show_default=True, help="Only `bridge` is available.")
@click.option("--subnet", default="", metavar="CIDR", help="The network's subnet (default: a free one).")
@click.option("--gateway", default="", metavar="IPV4", help="The bridge's address (default: the subnet's first).")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Set metadata on the network.")
@click.option("--internal", is_flag=True, help="No way out: no NAT, nothing forwarded off the network.")
@click.option("--attachable", is_flag=True, help="Recorded, as Docker does (any container may join a local network).")
@click.option("-o", "--opt", "opts", multiple=True, metavar="K=V", help="Driver options (none are supported).")
@click.pass_context
def create(ctx: click.Context, name: str, driver: str, subnet: str, gateway: str, labels: tuple[str, ...],
           internal: bool, attachable: bool, opts: tuple[str, ...]) -> None:
    """Create a network and print its id."""
    if driver != "bridge":
        raise InvalidArgument(f"network driver {driver!r} is not supported: only bridge")
    if opts:
        raise InvalidArgument("network driver options (-o) are not supported by pydock's bridge driver")
    rec = ctx.obj.runtime().user_networks.create(name, subnet=subnet, gateway=gateway, labels=parse_labels(labels),
                                                 internal=internal, attachable=attachable)
    click.echo(rec.id)


@network.command(name="ls")
@click.option("-q", "--quiet", is_flag=True, help="Only show network ids.")
@click.option("--no-trunc", is_flag=True, help="Show whole ids.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="K=V",
              help="name=SUBSTRING, id=PREFIX, label=K[=V], driver=bridge|host|null, type=builtin|custom.")
@click.pass_context
def ls(ctx: click.Context, quiet: bool, no_trunc: bool, filters: tuple[str, ...]) -> None:
    """List networks."""
    chosen = matching(ctx.obj.runtime(), [f.partition("=")[::2] for f in filters])
    ids = [n["Id"] if no_trunc else n["Id"][:12] for n in chosen]
    if quiet:
        for nid in ids:
            click.echo(nid)
        return
    click.echo(plain_table([[nid, n["Name"], n["Driver"], n["Scope"]] for nid, n in zip(ids, chosen)],
                           ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]))


@network.command()
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Show networks as JSON."""
    rt = ctx.obj.runtime()
    found, failed = [], False
    for ref in refs:
        try:
            found.append(network_json(rt, ref))
        except PydockError as err:
            failed = True
            click.echo(f"Error: {err}", err=True)
    click.echo(json.dumps(found, indent=4))
    if failed:
        ctx.exit(1)


@network.command()
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Remove networks no running container is on."""
    rt = ctx.obj.runtime()

    def remove(ref: str) -> None:  # prints the name as the user gave it
        rt.user_networks.remove(ref)

    each(refs, remove)


@network.command()
@click.option("--alias", "aliases", multiple=True, metavar="ALIAS", help="Another name on this network.")
@click.option("--ip", default="", metavar="IPV4", help="The container's address on this network.")
@click.argument("ref")
@click.argument("container")
@click.pass_context
def connect(ctx: click.Context, aliases: tuple[str, ...], ip: str, ref: str, container: str) -> None:
    """Connect a container to a network (at once if it runs)."""
    rt = ctx.obj.runtime()
    netattach.connect(rt, rt.get(container), ref, list(aliases), ip)


@network.command()
@click.option("-f", "--force", is_flag=True, help="Accepted for docker's sake; a disconnect always goes.")
@click.argument("ref")
@click.argument("container")
@click.pass_context
def disconnect(ctx: click.Context, force: bool, ref: str, container: str) -> None:
    """Disconnect a container from a network."""
    rt = ctx.obj.runtime()
    netattach.disconnect(rt, rt.get(container), ref)


@network.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def prune(ctx: click.Context, force: bool) -> None:
    """Remove every user network no running container is on."""
    if not force:
        click.confirm("WARNING! This will remove all custom networks not used by at least one container.\n"
                      "Are you sure you want to continue?", abort=True)
    removed = ctx.obj.runtime().user_networks.prune()
    if removed:
        click.echo("Deleted Networks:\n" + "".join(f"{name}\n" for name in removed))
