"""`pydock volume create|ls|inspect|rm|prune`: named and anonymous volumes, as `docker volume` shows them."""

from __future__ import annotations

import json

import click

from pydock.cli.each import each
from pydock.runtime import volumes as volume_ops
from pydock.runtime.options import parse_labels
from pydock.utils.errors import InvalidArgument, PydockError
from pydock.utils.humanize import human_size
from pydock.utils.table import plain_table


@click.group(context_settings={"help_option_names": ["--help"]})
def volume() -> None:
    """Manage volumes."""


@volume.command()
@click.argument("name", required=False)
@click.option("--name", "name_option", metavar="NAME", help="The volume's name (the argument's older spelling).")
@click.option("-d", "--driver", default="local", show_default=True, help="Only `local` is available.")
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Set metadata on the volume.")
@click.option("-o", "--opt", "opts", multiple=True, metavar="K=V", help="Driver options (none are supported).")
@click.pass_context
def create(ctx: click.Context, name: str | None, name_option: str | None, driver: str, labels: tuple[str, ...],
           opts: tuple[str, ...]) -> None:
    """Create a volume (a random name without one) and print its name."""
    if name and name_option and name != name_option:
        raise InvalidArgument("conflicting options: either specify --name or provide positional arg, not both")
    if driver != "local":
        raise InvalidArgument(f"volume driver {driver!r} is not supported: only local")
    if opts:
        raise InvalidArgument("volume driver options (-o) are not supported by pydock's local driver")
    info, _made = ctx.obj.runtime().volumes.create(name or name_option, parse_labels(labels))
    click.echo(info.name)


@volume.command(name="ls")
@click.option("-q", "--quiet", is_flag=True, help="Only show volume names.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="K=V",
              help="dangling=true|false, name=SUBSTRING, label=K[=V], driver=local.")
@click.pass_context
def ls(ctx: click.Context, quiet: bool, filters: tuple[str, ...]) -> None:
    """List volumes."""
    rt = ctx.obj.runtime()
    chosen = volume_ops.matching(rt, [f.partition("=")[::2] for f in filters])
    if quiet:
        for info in chosen:
            click.echo(info.name)
        return
    click.echo(plain_table([["local", info.name] for info in chosen], ["DRIVER", "VOLUME NAME"]))


@volume.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show volumes as JSON."""
    rt = ctx.obj.runtime()
    found, failed = [], None
    for name in names:
        try:
            found.append(rt.volumes.get(name).to_api())
        except PydockError as err:
            failed = err
            click.echo(f"Error: {err}", err=True)
    click.echo(json.dumps(found, indent=4))
    if failed is not None:
        ctx.exit(1)


@volume.command()
@click.option("-f", "--force", is_flag=True, help="Do not fail on a volume that does not exist.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove volumes no container uses."""
    rt = ctx.obj.runtime()
    each(names, lambda name: volume_ops.remove(rt, name, force=force))


@volume.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Named volumes too, not only anonymous ones.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def prune(ctx: click.Context, all_: bool, force: bool) -> None:
    """Remove the volumes no container uses (anonymous ones only, unless --all)."""
    if not force:
        click.confirm("WARNING! This will remove " + ("all" if all_ else "anonymous") + " local volumes not used "
                      "by at least one container.\nAre you sure you want to continue?", abort=True)
    removed, freed = volume_ops.prune(ctx.obj.runtime(), all_=all_)
    if removed:
        click.echo("Deleted Volumes:\n" + "".join(f"{name}\n" for name in removed))
    click.echo(f"Total reclaimed space: {human_size(freed)}")
